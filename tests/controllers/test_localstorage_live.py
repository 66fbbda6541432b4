"""The local-storage controller against a real apiserver: the ``local``
class appears (default only when no other class is), a claim of it is
provisioned and Bound in both directions, a deleted claim takes its volume
with it, claims of other classes are left alone; kubectl shows it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client, NotFoundError
from kubevisor.controllers import localstorage as ls
from kubevisor.controllers.manager import run_controllers_with
from tests.client.live import Live, live_apiserver, require_apiserver
from tests.controllers.nodeplay import eventually as _eventually
from tests.controllers.nodeplay import kubectl

JSON = dict[str, Any]
NS = "disks"
eventually = functools.partial(_eventually, timeout=20.0)


@contextlib.asynccontextmanager
async def controllers(live: Live) -> AsyncIterator[None]:
    stop = asyncio.Event()
    async with Client.from_kubeconfig(live.kubeconfig) as client:
        task = asyncio.create_task(run_controllers_with(client, stop, names=["localstorage"]))
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    require_apiserver()
    async with live_apiserver(tmp_path) as server:
        yield server


@pytest.fixture
async def api(live: Live) -> AsyncIterator[Client]:
    async with Client.from_kubeconfig(live.kubeconfig) as client:
        await client.create({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": NS}})
        yield client


def claim(name: str, storage: str = "1Gi", cls: str | None = "local",
          modes: tuple[str, ...] = ("ReadWriteOnce",)) -> JSON:
    spec: JSON = {"accessModes": list(modes), "resources": {"requests": {"storage": storage}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


async def maybe(api: Client, api_version: str, kind: str, name: str,
                namespace: str | None = None) -> JSON | None:
    try:
        return await api.get(api_version, kind, name, namespace=namespace)
    except NotFoundError:
        return None


def bound(api: Client, name: str) -> Callable[[], Awaitable[JSON | None]]:
    async def check() -> JSON | None:
        pvc = await maybe(api, "v1", "PersistentVolumeClaim", name, NS)
        if pvc and (pvc.get("status") or {}).get("phase") == "Bound":
            return pvc
        return None
    return check


def test_pure_class_and_steps() -> None:
    other_default = {"metadata": {"name": "fast", "annotations": {ls.DEFAULT_CLASS: "true"}},
                     "provisioner": "x"}
    second = ls.local_class([other_default])
    assert second is not None and "annotations" not in second["metadata"]
    made = ls.local_class([])
    assert made is not None and made["metadata"]["annotations"] == {ls.DEFAULT_CLASS: "true"}
    assert (made["provisioner"], made["reclaimPolicy"], made["volumeBindingMode"]) == \
        ("local.kubevisor.io", "Delete", "Immediate")
    assert ls.local_class([made]) is None
    pvc = {**claim("a", cls=None), "metadata": {"name": "a", "namespace": NS, "uid": "u1"}}
    assert ls.provisioner_class(pvc, [other_default, second]) is None  # "fast" is default
    assert ls.provisioner_class({**pvc, "spec": {"storageClassName": "local"}},
                                [other_default, second]) is second
    assert ls.provisioner_class(pvc, [made]) is made
    assert ls.provisioner_class({**pvc, "spec": {"storageClassName": ""}}, [made]) is None
    step = ls.claim_step(pvc, None, [made])
    assert step is not None and step.action == "create_pv"
    assert step.body["spec"]["csi"] == {"driver": "local.kubevisor.io", "volumeHandle": "pvc-u1"}
    # a PV whose claim is another one of that name is deleted (reclaim Delete)
    pv = step.body
    assert ls.volume_step(pv, pvc) is None
    other = {**pvc, "metadata": {**pvc["metadata"], "uid": "u2"}}
    gone = ls.volume_step(pv, other)
    assert gone is not None and gone.action == "pv_delete"
    retain = {**pv, "spec": {**pv["spec"], "persistentVolumeReclaimPolicy": "Retain"}}
    released = ls.volume_step(retain, None)
    assert released is not None and released.body["status"] == {"phase": "Released"}


async def test_claim_is_provisioned_bound_and_reclaimed(live: Live, api: Client) -> None:
    async with controllers(live):
        async def local_class() -> JSON | None:
            return await maybe(api, "storage.k8s.io/v1", "StorageClass", "local")
        sc = await eventually(local_class, what="the local StorageClass")
        assert sc["provisioner"] == "local.kubevisor.io"
        assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
        assert sc["metadata"]["annotations"][ls.DEFAULT_CLASS] == "true"

        made = await api.create(claim("data", "2Gi", modes=("ReadWriteOnce", "ReadOnlyMany")),
                                namespace=NS)
        uid = made["metadata"]["uid"]
        pvc = await eventually(bound(api, "data"), what="the claim Bound")
        assert pvc["spec"]["volumeName"] == f"pvc-{uid}"
        assert pvc["status"]["capacity"] == {"storage": "2Gi"}
        assert pvc["status"]["accessModes"] == ["ReadWriteOnce", "ReadOnlyMany"]
        pv = await api.get("v1", "PersistentVolume", f"pvc-{uid}")
        assert pv["status"]["phase"] == "Bound"
        assert pv["spec"]["csi"] == {"driver": "local.kubevisor.io", "volumeHandle": f"pvc-{uid}"}
        assert pv["spec"]["capacity"] == {"storage": "2Gi"}
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert pv["spec"]["storageClassName"] == "local"
        ref = pv["spec"]["claimRef"]
        assert (ref["namespace"], ref["name"], ref["uid"]) == (NS, "data", uid)

        # with no class, the default (local) provisions it too
        await api.create(claim("plain", "64Mi", cls=None), namespace=NS)
        plain = await eventually(bound(api, "plain"), what="the classless claim Bound")
        assert plain["spec"]["volumeName"] == f"pvc-{plain['metadata']['uid']}"
        assert plain["spec"]["storageClassName"] == "local"  # set retroactively

        # another class's claims, and claims with class "", are not ours
        await api.create(claim("elsewhere", cls="nfs"), namespace=NS)
        await api.create(claim("none", cls=""), namespace=NS)

        out = await kubectl(live.kubeconfig, "get", "pvc", "-n", NS, "--no-headers")
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
        assert rows["data"][1:3] == ["Bound", f"pvc-{uid}"]
        assert rows["data"][3:5] == ["2Gi", "RWO,ROX"]
        assert rows["elsewhere"][1] == "Pending" and rows["none"][1] == "Pending"
        for name in ("elsewhere", "none"):
            got = await api.get("v1", "PersistentVolumeClaim", name, namespace=NS)
            assert not got["spec"].get("volumeName")

        # delete the claim: the volume goes (reclaim Delete)
        await api.delete("v1", "PersistentVolumeClaim", "data", namespace=NS)

        async def pv_gone() -> bool:
            return await maybe(api, "v1", "PersistentVolume", f"pvc-{uid}") is None
        await eventually(pv_gone, what="the PV deleted")
        assert await maybe(api, "v1", "PersistentVolume", f"pvc-{plain['metadata']['uid']}")
        volumes = (await api.list("v1", "PersistentVolume"))["items"]
        assert [v["metadata"]["name"] for v in volumes] == [plain["spec"]["volumeName"]]


async def test_existing_default_is_kept_and_a_restart_resumes(live: Live, api: Client) -> None:
    await api.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                      "metadata": {"name": "fast",
                                   "annotations": {ls.DEFAULT_CLASS: "true"}},
                      "provisioner": "example.com/fast"})
    # a claim made while no controller runs, and a PV made by a crashed run
    made = await api.create(claim("early", "1Mi"), namespace=NS)
    sc = {"metadata": {"name": "local"}, "provisioner": ls.PROVISIONER, "reclaimPolicy": "Delete"}
    await api.create(ls.desired_pv(made, sc))
    await api.create(claim("nodefault", cls=None), namespace=NS)
    async with controllers(live):
        async def local_class() -> JSON | None:
            return await maybe(api, "storage.k8s.io/v1", "StorageClass", "local")
        created = await eventually(local_class, what="the local StorageClass")
        assert ls.DEFAULT_CLASS not in (created["metadata"].get("annotations") or {})
        pvc = await eventually(bound(api, "early"), what="the early claim Bound")
        assert pvc["spec"]["volumeName"] == f"pvc-{made['metadata']['uid']}"
        await asyncio.sleep(0.5)
        later = await api.get("v1", "PersistentVolumeClaim", "nodefault", namespace=NS)
        assert later["status"]["phase"] == "Pending"  # the default class is "fast"
