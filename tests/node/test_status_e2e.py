"""Pod status writes under churn: the status manager against a real
apiserver, and pods deleted while their container starts (real runc/crun,
real registry, real netns). The agent used to PUT statuses with the
resourceVersion of a copy older than the watch's (a deleted pod's), get
409, retry at once and loop forever with the pod left Terminating."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kubevisor.client import Client
from kubevisor.node.statusmanager import StatusManager, status_patch
from tests.client.live import Live
from tests.node.e2e import HostSetup, agent, busybox_pod, new_setup, require_drivers, wait_for


def test_status_patch_nulls_what_the_new_status_drops() -> None:
    old = {"phase": "Pending", "reason": "X", "podIP": "10.0.0.2",
           "nested": {"a": 1, "b": 2}, "conditions": [{"type": "Ready"}]}
    new = {"phase": "Running", "podIP": "10.0.0.2", "nested": {"a": 3}, "conditions": []}
    assert status_patch(old, new) == {"phase": "Running", "podIP": "10.0.0.2",
                                      "nested": {"a": 3, "b": None}, "conditions": [],
                                      "reason": None}
    assert status_patch(None, new) == new


async def test_status_manager_writes_the_latest_without_resource_version(
        live: Live, api: Client) -> None:
    pod = await api.create(busybox_pod("st", "busybox:1", ["sleep", "1"], node="n1"))
    # The pod moves on (a deletion-like change) after the copy the worker holds.
    await api.patch("v1", "Pod", "st", {"metadata": {"labels": {"moved": "on"}}},
                    namespace="default")
    written: list[dict] = []
    manager = StatusManager(api, writers=2, on_written=written.append)
    runner = asyncio.create_task(manager.run())
    try:
        for i in range(5):  # only the newest of a burst needs writing
            manager.set(pod, {"phase": "Pending", "message": f"m{i}"})
        await wait_for(lambda: asyncio.sleep(0, not manager.pending(pod["metadata"]["uid"])),
                       timeout=10, what="status written")
        manager.set(pod, {"phase": "Running"})  # drops message: written as null
        await wait_for(lambda: asyncio.sleep(0, not manager.pending(pod["metadata"]["uid"])),
                       timeout=10, what="second status written")
    finally:
        runner.cancel()
    got = await api.get("v1", "Pod", "st", namespace="default")
    assert got["status"]["phase"] == "Running"
    assert "message" not in got["status"]
    assert got["metadata"]["labels"] == {"moved": "on"}
    assert manager.writes <= 3 and manager.failures == 0
    assert written[-1]["status"]["phase"] == "Running"


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_drivers()
    from tests.support import images
    from tests.support.registry import push, running_registry

    with running_registry(tmp_path_factory.mktemp("status-registry")) as reg:
        yield push(images.build(images.busybox_recipe()), reg, name="status/busybox", tag="1")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[HostSetup]:
    require_drivers()
    s = new_setup(tmp_path / "host")
    try:
        yield s
    finally:
        await s.cleanup()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
async def test_pods_deleted_while_starting_are_all_finalized(
        live: Live, api: Client, setup: HostSetup, busybox: str) -> None:
    count = 16
    rng = random.Random(7)
    async with agent(live.kubeconfig, setup):

        async def one(i: int) -> None:
            await api.create(busybox_pod(f"churn-{i}", busybox, ["sleep", "3600"]))
            await asyncio.sleep(rng.uniform(0.0, 1.4))
            await api.delete("v1", "Pod", f"churn-{i}", namespace="default",
                             grace_period_seconds=1)

        await asyncio.gather(*(one(i) for i in range(count)))

        async def all_gone() -> bool:
            items = (await api.list("v1", "Pod", namespace="default"))["items"]
            return not [p for p in items if p["metadata"]["name"].startswith("churn-")]

        await wait_for(all_gone, timeout=90, what="every deleted pod finalized")
        runtime = (await setup.drivers()).runtime

        async def no_containers() -> bool:
            return not [c for c in await runtime.list()
                        if c.labels.get("io.kubernetes.pod.name", "").startswith("churn-")]

        await wait_for(no_containers, timeout=30, what="containers removed")
