"""Durability of acknowledged writes (SQLite, and etcd too): several concurrent clients
create 1,000 ConfigMaps over HTTPS while the test ``kill -9``s the server
at a random moment; after a restart on the same data dir every create that
got a 2xx is there with its value, and the server serves new writes."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import KubevisorServer, server_on_store

pytestmark = pytest.mark.slow

TOTAL = 1000
WRITERS = 8
CM = {"apiVersion": "v1", "kind": "ConfigMap"}


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KubevisorServer]:
    """SQLite is the point (the embedded store must be durable); on etcd the
    same test shows kubevisor acknowledges only what etcd committed."""
    with server_on_store(request.param, tmp_path) as server:
        yield server


async def write_until_killed(
    server: KubevisorServer, namespace: str, kill_after: int
) -> tuple[dict[str, str], int]:
    """Create ConfigMaps from WRITERS tasks; SIGKILL the server once
    ``kill_after`` creates were acknowledged. Returns acknowledged name ->
    value and the number of requests that failed."""
    acked: dict[str, str] = {}
    failed = 0
    names = iter(range(TOTAL))
    killed = asyncio.Event()

    async def writer(http: httpx.AsyncClient) -> None:
        nonlocal failed
        for i in names:
            name = f"cm-{i:04d}"
            value = secrets.token_hex(16)
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": {"value": value, "i": str(i)},
            }
            try:
                response = await http.post(f"/api/v1/namespaces/{namespace}/configmaps", json=body)
            except httpx.HTTPError:
                failed += 1
                if killed.is_set():
                    return
                continue
            if 200 <= response.status_code < 300:
                acked[name] = value
                if len(acked) >= kill_after and not killed.is_set():
                    killed.set()
                    server.kill()
            else:
                failed += 1

    limits = httpx.Limits(max_connections=WRITERS, max_keepalive_connections=WRITERS)
    async with server.async_client(timeout=10.0, limits=limits) as http:
        await asyncio.gather(*(writer(http) for _ in range(WRITERS)))
    return acked, failed


async def test_acknowledged_writes_survive_kill_9(fresh_server: KubevisorServer) -> None:
    server = fresh_server
    namespace = "durable"
    with server.client() as http:
        created = http.post(
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        assert created.status_code == 201, created.text

    kill_after = random.randint(50, TOTAL - 100)
    acked, _failed = await write_until_killed(server, namespace, kill_after)
    assert not server.running(), "the server should have been killed"
    assert len(acked) >= kill_after

    server.start()
    with server.client() as http:
        listing = http.get(f"/api/v1/namespaces/{namespace}/configmaps")
        assert listing.status_code == 200, listing.text
        stored = {
            item["metadata"]["name"]: item["data"]["value"] for item in listing.json()["items"]
        }
        missing = sorted(set(acked) - set(stored))
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        wrong = [name for name, value in acked.items() if stored[name] != value]
        assert not wrong, f"acknowledged values changed: {wrong[:5]}"
        # unacknowledged creates may or may not have landed, but none is corrupt
        assert all(name.startswith("cm-") for name in stored)
        # revisions keep increasing after the restart: a new write gets a larger one
        last = max(int(item["metadata"]["resourceVersion"]) for item in listing.json()["items"])
        after = http.post(
            f"/api/v1/namespaces/{namespace}/configmaps",
            json=CM | {"metadata": {"name": "after-restart"}, "data": {"v": "1"}},
        )
        assert after.status_code == 201, after.text
        assert int(after.json()["metadata"]["resourceVersion"]) > last
        for name in random.sample(sorted(acked), min(20, len(acked))):
            one = http.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
            assert one.status_code == 200 and one.json()["data"]["value"] == acked[name]


async def test_updates_and_deletes_survive_kill_9(fresh_server: KubevisorServer) -> None:
    """Acknowledged updates and deletes are as durable as creates."""
    server = fresh_server
    with server.client() as http:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "upd"}}
        assert http.post("/api/v1/namespaces", json=namespace).is_success
        for i in range(40):
            response = http.post(
                "/api/v1/namespaces/upd/configmaps",
                json=CM | {"metadata": {"name": f"u{i}"}, "data": {"v": "0"}},
            )
            assert response.status_code == 201
    expected: dict[str, str | None] = {}

    async def mutate(http: httpx.AsyncClient, i: int) -> None:
        path = f"/api/v1/namespaces/upd/configmaps/u{i}"
        if i % 4 == 0:
            response = await http.delete(path)
            if response.is_success:
                expected[f"u{i}"] = None
        else:
            response = await http.patch(
                path,
                content=b'{"data":{"v":"%d"}}' % i,
                headers={"Content-Type": "application/merge-patch+json"},
            )
            if response.is_success:
                expected[f"u{i}"] = str(i)

    async with server.async_client() as http:
        await asyncio.gather(*(mutate(http, i) for i in range(40)))
    assert len(expected) == 40
    server.kill()
    server.start()
    with server.client() as http:
        items = http.get("/api/v1/namespaces/upd/configmaps").json()["items"]
    stored = {item["metadata"]["name"]: item["data"]["v"] for item in items}
    for name, value in expected.items():
        assert stored.get(name) == value, (name, stored.get(name), value)
