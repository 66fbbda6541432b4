"""The client against the real apiserver: CRUD, patch, errors, watch, informer."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kubevisor.client import (
    INITIAL_EVENTS_END,
    AlreadyExistsError,
    Client,
    ConflictError,
    Informer,
    NotFoundError,
    UnknownResourceError,
)
from tests.client.live import Live


@pytest.fixture(autouse=True)
async def default_namespace(api: Client) -> None:
    """kube-apiserver creates "default" at start; make sure it is there."""
    try:
        await api.create({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "default"}})
    except AlreadyExistsError:
        pass


def cm(name: str, ns: str = "default", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": dict(data)}


async def test_crud_and_errors(api: Client) -> None:
    created = await api.create(cm("a", x="1"))
    assert created["metadata"]["uid"]
    with pytest.raises(AlreadyExistsError) as exc:
        await api.create(cm("a"))
    assert exc.value.code == 409
    got = await api.get("v1", "ConfigMap", "a")
    assert got["data"] == {"x": "1"}
    got["data"]["x"] = "2"
    updated = await api.update(got)
    assert updated["data"]["x"] == "2"
    with pytest.raises(ConflictError):
        await api.update(got)  # stale resourceVersion
    patched = await api.patch("v1", "ConfigMap", "a", {"data": {"y": "3"}})
    assert patched["data"] == {"x": "2", "y": "3"}
    patched = await api.patch("v1", "ConfigMap", "a", [{"op": "remove", "path": "/data/x"}],
                              type="json")
    assert patched["data"] == {"y": "3"}
    patched = await api.patch("v1", "ConfigMap", "a", {"data": {"z": "4"}}, type="strategic")
    assert patched["data"] == {"y": "3", "z": "4"}
    listed = await api.list("v1", "ConfigMap", namespace="default")
    assert "a" in {i["metadata"]["name"] for i in listed["items"]}
    assert all(i["kind"] == "ConfigMap" for i in listed["items"])
    await api.delete("v1", "ConfigMap", "a")
    with pytest.raises(NotFoundError) as nf:
        await api.get("v1", "ConfigMap", "a")
    assert nf.value.reason == "NotFound"
    with pytest.raises(UnknownResourceError):
        await api.get("example.com/v1", "Nope", "x")


async def test_server_side_apply(api: Client) -> None:
    applied = await api.apply(cm("b", w="5"), field_manager="tests")
    assert applied["data"] == {"w": "5"}
    again = await api.apply(cm("b", w="6"), field_manager="tests")
    assert again["data"] == {"w": "6"}
    assert again["metadata"]["uid"] == applied["metadata"]["uid"]


async def test_list_follows_continue_pages(api: Client) -> None:
    ns = f"pages-{uuid.uuid4().hex[:6]}"
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for i in range(7):
        await api.create(cm(f"c{i}", ns))
    listed = await api.list("v1", "ConfigMap", namespace=ns, limit=3)
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == [f"c{i}" for i in range(7)]
    assert "continue" not in listed["metadata"]
    await api.delete_collection("v1", "ConfigMap", namespace=ns)
    assert (await api.list("v1", "ConfigMap", namespace=ns))["items"] == []


async def test_update_status_and_namespace_defaulting(api: Client) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created = await api.create(pod)
    assert created["metadata"]["namespace"] == "default"
    created["status"] = {"phase": "Running"}
    updated = await api.update_status(created)
    assert updated["status"]["phase"] == "Running"


async def test_watch_lists_then_streams_and_marks_initial_end(api: Client) -> None:
    await api.create(cm("w0"))
    events: list[tuple[str, str]] = []
    synced = asyncio.Event()

    async def consume() -> None:
        async for etype, obj in api.watch("v1", "ConfigMap", namespace="default"):
            if etype == "BOOKMARK":
                if obj["metadata"].get("annotations", {}).get(INITIAL_EVENTS_END) == "true":
                    synced.set()
                continue
            events.append((etype, obj["metadata"]["name"]))
            if (etype, obj["metadata"]["name"]) == ("DELETED", "w1"):
                return

    task = asyncio.create_task(consume())
    await asyncio.wait_for(synced.wait(), 10)
    assert events == [("ADDED", "w0")]
    await api.create(cm("w1"))
    await api.patch("v1", "ConfigMap", "w1", {"data": {"a": "b"}})
    await api.delete("v1", "ConfigMap", "w1")
    await asyncio.wait_for(task, 10)
    assert events[1:] == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


async def test_watch_resumes_from_a_resource_version(api: Client) -> None:
    first = await api.create(cm("r0"))
    await api.create(cm("r1"))
    seen = []
    async for etype, obj in api.watch("v1", "ConfigMap", namespace="default",
                                      resource_version=first["metadata"]["resourceVersion"],
                                      timeout_seconds=1):
        if etype != "BOOKMARK":
            seen.append((etype, obj["metadata"]["name"]))
    assert seen == [("ADDED", "r1")]


async def test_informer_cache_and_handlers(api: Client) -> None:
    await api.create(cm("i0"))
    inf = Informer(api, "v1", "ConfigMap", namespace="default")
    got: list[tuple[str, str, bool]] = []
    inf.add_handler(lambda t, o, old: got.append((t, o["metadata"]["name"], old is not None)))
    task = asyncio.create_task(inf.run())
    try:
        await asyncio.wait_for(inf.synced.wait(), 10)
        assert inf.get("i0", "default") is not None
        await api.create(cm("i1"))
        await api.delete("v1", "ConfigMap", "i0")
        for _ in range(1000):
            if inf.get("i1", "default") is not None and inf.get("i0", "default") is None:
                break
            await asyncio.sleep(0.02)
        assert inf.get("i0", "default") is None
        assert [k for k in inf.keys() if k[1].startswith("i")] == [("default", "i1")]
        assert ("ADDED", "i0", False) in got and ("ADDED", "i1", False) in got
        assert ("DELETED", "i0", True) in got
    finally:
        task.cancel()


async def test_watch_from_a_compacted_revision_relists_transparently(
        api: Client, live: Live) -> None:
    old = await api.create(cm("x0"))
    await api.create(cm("x1"))
    await api.delete("v1", "ConfigMap", "x0")
    await live.store.compact(await live.store.current_revision())
    seen: list[tuple[str, str]] = []
    async for etype, obj in api.watch("v1", "ConfigMap", namespace="default",
                                      resource_version=old["metadata"]["resourceVersion"]):
        if etype == "BOOKMARK":
            if obj["metadata"].get("annotations", {}).get(INITIAL_EVENTS_END) == "true":
                break
            continue
        seen.append((etype, obj["metadata"]["name"]))
    assert seen == [("ADDED", "x1")]


async def test_informer_restart_drops_what_vanished_meanwhile(api: Client) -> None:
    await api.create(cm("v0"))
    await api.create(cm("v1"))
    inf = Informer(api, "v1", "ConfigMap", namespace="default")
    deleted: list[str] = []
    inf.add_handler(lambda t, o, old: deleted.append(o["metadata"]["name"])
                    if t == "DELETED" else None)
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.synced.wait(), 10)
    task.cancel()
    await api.delete("v1", "ConfigMap", "v0")  # while nobody watches
    task = asyncio.create_task(inf.run())
    try:
        for _ in range(1000):
            if inf.get("v0", "default") is None:
                break
            await asyncio.sleep(0.02)
        assert inf.get("v0", "default") is None
        assert inf.get("v1", "default") is not None
        assert deleted == ["v0"]
    finally:
        task.cancel()
