"""The garbage collector on a Deployment -> ReplicaSet -> Pod chain built by
hand, deleted with the real kubectl's --cascade=background|foreground|orphan."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kubevisor.client import Client, NotFoundError

KUBECTL = "/usr/bin/kubectl"
LABELS = {"app": "web"}
TEMPLATE = {"metadata": {"labels": LABELS},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def kubectl(tmp_path: Path, *args: str) -> str:
    """The real kubectl on the kubeconfig the in-process server wrote (the ``api``
    fixture serves from ``tmp_path``), run without blocking the server's loop."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "-n", "gc", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
             "KUBECONFIG": str(tmp_path / "kubeconfig")})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


def ref(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


async def chain(api: Client, pods: int = 3) -> tuple[dict, dict, list[dict]]:
    try:
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gc"}})
    except Exception:
        pass
    # paused: the Deployment controller adopts the hand-made ReplicaSet and
    # makes none of its own; the ReplicaSet controller makes the pods
    dep = await api.create({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "gc"},
        "spec": {"replicas": pods, "paused": True, "selector": {"matchLabels": LABELS},
                 "template": TEMPLATE}})
    rs = await api.create({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "gc", "labels": LABELS,
                     "ownerReferences": [ref(dep)]},
        "spec": {"replicas": pods, "selector": {"matchLabels": LABELS}, "template": TEMPLATE}})
    created: list[dict] = []
    for _ in range(1200):
        created = [p for p in (await api.list("v1", "Pod", namespace="gc",
                                              label_selector="app=web"))["items"]
                   if (p["metadata"].get("ownerReferences") or [{}])[0].get("uid")
                   == rs["metadata"]["uid"]]
        if len(created) == pods:
            break
        await asyncio.sleep(0.05)
    assert len(created) == pods, "the ReplicaSet controller made no pods"
    return dep, rs, created


async def exists(api: Client, obj: dict) -> bool:
    md = obj["metadata"]
    try:
        got = await api.get(obj["apiVersion"], obj["kind"], md["name"], namespace=md["namespace"])
    except NotFoundError:
        return False
    return bool(got["metadata"]["uid"] == md["uid"])


async def wait_gone(api: Client, objs: list[dict], timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for obj in objs:
        while await exists(api, obj):
            assert loop.time() < deadline, f"{obj['kind']} {obj['metadata']['name']} not deleted"
            await asyncio.sleep(0.05)


async def test_background_deletes_the_chain(api: Client, tmp_path: Path) -> None:
    dep, rs, pods = await chain(api)
    await kubectl(tmp_path, "delete", "deployment", "web", "--cascade=background")
    assert not await exists(api, dep)  # the owner goes at once
    await wait_gone(api, [rs, *pods])


async def test_foreground_deletes_dependents_first(api: Client, tmp_path: Path) -> None:
    dep, rs, pods = await chain(api)
    deleted_at: dict[str, int] = {}

    async def record(api_version: str, kind: str) -> None:
        async for etype, obj in api.watch(api_version, kind, namespace="gc"):
            if etype == "DELETED":
                deleted_at[obj["metadata"]["uid"]] = int(obj["metadata"]["resourceVersion"])

    watchers = [asyncio.create_task(record(*k)) for k in
                (("v1", "Pod"), ("apps/v1", "ReplicaSet"), ("apps/v1", "Deployment"))]
    await asyncio.sleep(0.3)
    try:
        # kubectl waits until the deployment is gone
        await kubectl(tmp_path, "delete", "deployment", "web", "--cascade=foreground",
                      "--timeout=30s")
        await wait_gone(api, [dep, rs, *pods])
        for _ in range(600):
            if len(deleted_at) == 5:
                break
            await asyncio.sleep(0.05)
    finally:
        for w in watchers:
            w.cancel()
    uid = lambda o: o["metadata"]["uid"]  # noqa: E731
    assert len(deleted_at) == 5
    assert max(deleted_at[uid(p)] for p in pods) < deleted_at[uid(rs)] < deleted_at[uid(dep)]


async def test_foreground_owner_waits_while_a_blocking_dependent_is_held(
        api: Client, tmp_path: Path) -> None:
    dep, rs, pods = await chain(api, pods=1)
    await api.patch("v1", "Pod", pods[0]["metadata"]["name"], namespace="gc",
                    patch={"metadata": {"finalizers": ["example.com/hold"]}})
    await api.delete("apps/v1", "Deployment", "web", namespace="gc",
                     propagation_policy="Foreground")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:  # the collector asks the pod to go; its finalizer holds it
        pod = await api.get("v1", "Pod", pods[0]["metadata"]["name"], namespace="gc")
        if pod["metadata"].get("deletionTimestamp"):
            break
        assert loop.time() < deadline, "the held pod was never asked to go"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    held_dep = await api.get("apps/v1", "Deployment", "web", namespace="gc")
    assert held_dep["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in held_dep["metadata"]["finalizers"]
    held_rs = await api.get("apps/v1", "ReplicaSet", "web-1", namespace="gc")
    assert "foregroundDeletion" in held_rs["metadata"]["finalizers"]
    await api.patch("v1", "Pod", pods[0]["metadata"]["name"], namespace="gc",
                    patch={"metadata": {"finalizers": None}})
    await wait_gone(api, [*pods, rs, dep])


async def test_orphan_keeps_dependents_and_drops_the_reference(
        api: Client, tmp_path: Path) -> None:
    dep, rs, pods = await chain(api)
    await kubectl(tmp_path, "delete", "deployment", "web", "--cascade=orphan")
    await wait_gone(api, [dep])
    got = await api.get("apps/v1", "ReplicaSet", "web-1", namespace="gc")
    assert not got["metadata"].get("ownerReferences")
    await asyncio.sleep(0.5)  # the collector had time to (wrongly) act
    for p in pods:
        assert await exists(api, p)
        live = await api.get("v1", "Pod", p["metadata"]["name"], namespace="gc")
        assert live["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]


async def test_dangling_reference_is_collected_and_partial_owner_ref_removed(
        api: Client) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gc"}})
    owner = await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "owner", "namespace": "gc"}})
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
             "uid": "00000000-0000-0000-0000-000000000001"}
    orphan = await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "dangling", "namespace": "gc",
                                            "ownerReferences": [ghost]}})
    shared = await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "shared", "namespace": "gc",
                                            "ownerReferences": [ghost, {
                                                "apiVersion": "v1", "kind": "ConfigMap",
                                                "name": "owner",
                                                "uid": owner["metadata"]["uid"]}]}})
    await wait_gone(api, [orphan])
    for _ in range(1200):
        got = await api.get("v1", "ConfigMap", "shared", namespace="gc")
        if len(got["metadata"].get("ownerReferences") or []) == 1:
            break
        await asyncio.sleep(0.05)
    assert [r["name"] for r in got["metadata"]["ownerReferences"]] == ["owner"]
    assert await exists(api, shared)


@pytest.mark.slow
async def test_many_dependents_are_collected(api: Client) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gc"}})
    owner = await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "owner", "namespace": "gc"}})
    deps = []
    for i in range(300):
        deps.append(await api.create({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"d{i}", "namespace": "gc",
                         "ownerReferences": [ref(owner) | {"blockOwnerDeletion": False}]}}))
    await api.delete("v1", "ConfigMap", "owner", namespace="gc")
    await wait_gone(api, deps, timeout=120)
