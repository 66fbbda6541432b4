"""The controller manager by name: controllers selected and excluded, one
informer per watched kind for all of them, and the scheduler in a manager
of its own beside the others (as ``kubevisor up`` runs kube-scheduler's
equivalent), against the real in-process apiserver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import pytest

from kubevisor.apiserver.pki import ensure_pki
from kubevisor.cli.controllers import parse_args
from kubevisor.client import Client, SharedInformers
from kubevisor.controllers.manager import (
    CONTROLLERS,
    ManagerOptions,
    run_controllers,
    selected,
)
from tests.client.live import Live, live_apiserver, require_apiserver

NS = "split"


def test_selected_names_and_exclusions() -> None:
    everything = selected()
    assert everything == list(CONTROLLERS) and "scheduler" in everything
    assert selected(["scheduler"]) == ["scheduler"]
    assert "scheduler" not in selected(exclude=["scheduler"])
    assert len(selected(exclude=["scheduler"])) == len(CONTROLLERS) - 1
    assert selected(["job", "namespace"], exclude=["job"]) == ["namespace"]
    with pytest.raises(ValueError, match="kube-scheduler"):
        selected(["kube-scheduler"])
    with pytest.raises(ValueError, match="nope"):
        selected(exclude=["nope"])


def test_cli_options() -> None:
    args = parse_args(["/k", "12", "--controllers", "scheduler"])
    assert (args.kubeconfig, args.parent_pid, args.controllers, args.exclude) == \
        (Path("/k"), 12, ["scheduler"], [])
    args = parse_args(["/k", "--exclude", "scheduler, job"])
    assert args.controllers is None and args.exclude == ["scheduler", "job"]


async def test_every_controller_shares_one_watch_per_kind(tmp_path: Path) -> None:
    """Built on one factory, the controllers ask for one Pod, one Node and
    one Service informer in all (pod subsets are filtered in handlers)."""
    client = Client("https://127.0.0.1:1", verify=False)  # never connects: nothing runs
    try:
        informers = SharedInformers(client)
        ca = tmp_path / "ca"
        creds = ensure_pki(ca)
        options = ManagerOptions(ca_cert_file=creds.ca_file, ca_key_file=ca / "ca.key",
                                 cluster_cidr="10.200.0.0/16")
        built = [CONTROLLERS[name](client, informers, options) for name in selected()]
        assert all(c is not None for c in built)
        kinds = [(i.api_version, i.kind) for i in informers.created()]
        for kind in (("v1", "Pod"), ("v1", "Node"), ("v1", "Service"), ("v1", "Namespace"),
                     ("apps/v1", "ReplicaSet")):
            assert kinds.count(kind) == 1, (kind, kinds)
    finally:
        await client.aclose()


# -- the scheduler apart from the other controllers --------------------------


@contextlib.asynccontextmanager
async def manager(kubeconfig: Path, *, names: Collection[str] | None = None,
                  exclude: Collection[str] = ()) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_controllers(kubeconfig, stop, names=names, exclude=exclude))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    require_apiserver()
    async with live_apiserver(tmp_path) as server:
        yield server


def replicaset(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "c", "image": "busybox"}]}}}}


async def pods_of(api: Client, app: str) -> list[dict[str, Any]]:
    listed = await api.list("v1", "Pod", namespace=NS, label_selector=f"app={app}")
    return list(listed["items"])


async def until(check: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_scheduler_in_a_manager_of_its_own(live: Live) -> None:
    async with Client.from_kubeconfig(live.kubeconfig) as api:
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        alloc = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                          "status": {"capacity": alloc, "allocatable": alloc}})
        async with manager(live.kubeconfig, exclude=["scheduler"]):
            await api.create(replicaset("web", 3))

            async def three() -> bool:
                return len(await pods_of(api, "web")) == 3

            await until(three)  # the ReplicaSet controller runs ...
            await asyncio.sleep(1.0)
            assert not [p for p in await pods_of(api, "web") if p["spec"].get("nodeName")]
            async with manager(live.kubeconfig, names=["scheduler"]):  # ... the scheduler not

                async def bound() -> bool:
                    return all(p["spec"].get("nodeName") == "n1"
                               for p in await pods_of(api, "web"))

                await until(bound)
