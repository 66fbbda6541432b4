"""Watch streams over real HTTPS (uvicorn): initial state, resume from a
resourceVersion, selectors, compaction (410), timeouts, bookmarks, Tables."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

CM = "/api/v1/namespaces/ns1/configmaps"


def client(url: Any) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(url.ca_file))
    return httpx.AsyncClient(base_url=str(url), verify=ctx, headers=url.headers, timeout=10)


def cm(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}}


async def events(http: httpx.AsyncClient, path: str, **params: Any) -> AsyncIterator[dict]:
    async with http.stream("GET", path, params={"watch": "true", **params}) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line:
                yield orjson.loads(line)


async def take(it: AsyncIterator[dict], n: int, timeout: float = 5) -> list[dict]:
    out: list[dict] = []

    async def run() -> None:
        async for ev in it:
            out.append(ev)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


@pytest.fixture
async def http(served: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client(served) as c:
        r = await c.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": "ns1"}})
        assert r.status_code == 201
        yield c


async def test_initial_state_then_live_events(http: httpx.AsyncClient) -> None:
    await http.post(CM, json=cm("a"))
    stream = events(http, CM)
    first = await take(stream, 1)
    assert first[0]["type"] == "ADDED" and first[0]["object"]["metadata"]["name"] == "a"

    async def writes() -> None:
        await asyncio.sleep(0.1)
        await http.post(CM, json=cm("b"))
        await http.patch(f"{CM}/b", content=b'{"data":{"k":"v"}}',
                         headers={"Content-Type": "application/merge-patch+json"})
        await http.delete(f"{CM}/b")

    task = asyncio.create_task(writes())
    got = await take(stream, 3)
    await task
    await stream.aclose()
    assert [e["type"] for e in got] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in got]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


async def test_resume_from_resource_version(http: httpx.AsyncClient) -> None:
    rv = (await http.post(CM, json=cm("a"))).json()["metadata"]["resourceVersion"]
    await http.post(CM, json=cm("b"))
    got = await take(events(http, CM, resourceVersion=rv), 1)
    assert got[0]["type"] == "ADDED" and got[0]["object"]["metadata"]["name"] == "b"


async def test_selector_transitions(http: httpx.AsyncClient) -> None:
    stream = events(http, CM, labelSelector="sel=yes")

    async def writes() -> None:
        await asyncio.sleep(0.2)
        await http.post(CM, json=cm("a", sel="no"))
        await http.patch(f"{CM}/a", content=b'{"metadata":{"labels":{"sel":"yes"}}}',
                         headers={"Content-Type": "application/merge-patch+json"})
        await http.patch(f"{CM}/a", content=b'{"metadata":{"labels":{"sel":"no"}}}',
                         headers={"Content-Type": "application/merge-patch+json"})

    task = asyncio.create_task(writes())
    got = await take(stream, 2)
    await task
    assert [e["type"] for e in got] == ["ADDED", "DELETED"]


async def test_compacted_revision_is_410(http: httpx.AsyncClient, served: Any) -> None:
    old_rv = (await http.post(CM, json=cm("a"))).json()["metadata"]["resourceVersion"]
    for i in range(3):
        await http.post(CM, json=cm(f"x{i}"))
    r = await http.get(CM)
    current = int(r.json()["metadata"]["resourceVersion"])
    await served.store.compact(current - 1)
    got = await take(events(http, CM, resourceVersion=old_rv), 1)
    assert got[0]["type"] == "ERROR"
    status = got[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {old_rv} (")


async def test_timeout_seconds_ends_stream(http: httpx.AsyncClient) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = [e async for e in events(http, CM, timeoutSeconds="1")]
    assert got == [] and 0.9 <= loop.time() - start < 5


async def test_bookmarks(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubevisor.apiserver import watch

    monkeypatch.setattr(watch, "BOOKMARK_INTERVAL", 0.2)
    rv = (await http.post(CM, json=cm("a"))).json()["metadata"]["resourceVersion"]
    got = await take(events(http, CM, resourceVersion=rv, allowWatchBookmarks="true"), 1)
    assert got[0]["type"] == "BOOKMARK"
    assert got[0]["object"]["kind"] == "ConfigMap"
    assert got[0]["object"]["metadata"]["resourceVersion"] == rv


async def test_table_watch_rows(http: httpx.AsyncClient) -> None:
    await http.post(CM, json=cm("a"))
    await http.post(CM, json=cm("b"))
    http.headers["Accept"] = "application/json;as=Table;v=v1;g=meta.k8s.io"
    got = await take(events(http, CM), 2)
    assert all(e["object"]["kind"] == "Table" for e in got)
    assert [len(e["object"]["rows"]) for e in got] == [1, 1]
    assert got[0]["object"]["columnDefinitions"][0]["name"] == "Name"
    assert got[1]["object"]["rows"][0]["cells"][0] == "b"


@pytest.mark.slow
async def test_python_client_watch_stream(served: Any) -> None:
    from kubernetes import client as k8s
    from kubernetes import watch as k8s_watch

    conf = k8s.Configuration()
    conf.host = str(served)
    conf.ssl_ca_cert = str(served.ca_file)
    conf.api_key = {"authorization": f"Bearer {served.token}"}
    api = k8s.CoreV1Api(k8s.ApiClient(conf))

    def run() -> list[tuple[str, str]]:
        api.create_namespace({"metadata": {"name": "pyns"}})
        created = api.create_namespaced_config_map("pyns", {"metadata": {"name": "one"}})
        api.create_namespaced_config_map("pyns", {"metadata": {"name": "two"}})
        w = k8s_watch.Watch()
        seen = []
        for ev in w.stream(api.list_namespaced_config_map, "pyns", timeout_seconds=2,
                           resource_version=created.metadata.resource_version):
            seen.append((ev["type"], ev["object"].metadata.name))
        return seen

    seen = await asyncio.to_thread(run)
    assert seen == [("ADDED", "two")]
