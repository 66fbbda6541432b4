"""The LoadBalancer controller against a real apiserver, with a pool of its
own (two addresses of TEST-NET-2; nothing is sent anywhere): allocation,
requested addresses, exhaustion and its Event, release on delete and on a
type change, and a restart that resumes from the Services alone."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client
from kubevisor.controllers import loadbalancer
from kubevisor.controllers.loadbalancer import LoadBalancerController
from tests.client.live import live_apiserver, require_apiserver
from tests.controllers.nodeplay import eventually as _eventually

JSON = dict[str, Any]
POOL = "198.51.100.9-198.51.100.10"
NS = "lb"


#: Polls as nodeplay.eventually does, with this module's 20 s default.
eventually = functools.partial(_eventually, timeout=20.0)


@contextlib.asynccontextmanager
async def running(client: Client, pool: str = POOL) -> AsyncIterator[LoadBalancerController]:
    ctl = LoadBalancerController(client, pool=pool)
    task = asyncio.create_task(ctl.run())
    try:
        yield ctl
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    require_apiserver()
    async with live_apiserver(tmp_path) as live, Client.from_kubeconfig(live.kubeconfig) as c:
        await c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield c


async def lb(client: Client, name: str, **spec: Any) -> JSON:
    return await client.create({"apiVersion": "v1", "kind": "Service",
                                "metadata": {"name": name, "namespace": NS},
                                "spec": {"type": "LoadBalancer", "selector": {"app": name},
                                         "ports": [{"port": 80}], **spec}})


async def ingress(client: Client, name: str) -> list[str]:
    svc = await client.get("v1", "Service", name, namespace=NS)
    return loadbalancer.ingress_ips(svc)


def has(client: Client, name: str, ips: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await ingress(client, name) == ips
    return check


async def events(client: Client, name: str) -> list[JSON]:
    listed = await client.list("v1", "Event", namespace=NS,
                               field_selector=f"involvedObject.name={name}")
    return list(listed["items"])


def test_pool_parsing() -> None:
    pool = loadbalancer.parse_pool("192.0.2.0/30, 198.51.100.7-198.51.100.8")
    assert list(pool.addresses()) == ["192.0.2.1", "192.0.2.2", "198.51.100.7", "198.51.100.8"]
    assert "192.0.2.2" in pool and "192.0.2.3" not in pool and "nope" not in pool


async def test_addresses_from_the_pool_exhaustion_and_release(client: Client) -> None:
    async with running(client):
        await lb(client, "b", loadBalancerIP="198.51.100.10")
        await eventually(has(client, "b", ["198.51.100.10"]), what="requested IP")
        await lb(client, "a")
        await eventually(has(client, "a", ["198.51.100.9"]), what="free IP")
        svc = await client.get("v1", "Service", "a", namespace=NS)
        assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.9",
                                                              "ipMode": "VIP"}]
        # ClusterIP Services and other load balancer classes are not ours.
        await client.create({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "plain", "namespace": NS},
                             "spec": {"ports": [{"port": 80}]}})
        await lb(client, "classy", loadBalancerClass="example.com/other")
        # The pool is empty now: the third waits, with a Warning Event.
        await lb(client, "c")

        async def warned() -> list[JSON]:
            return [e for e in await events(client, "c") if e["reason"] == "AllocationFailed"]

        [event] = await eventually(warned, what="AllocationFailed event")
        assert event["type"] == "Warning"
        assert event["message"] == ('Failed to allocate IP for "lb/c": no available IPs in pool '
                                    f"{POOL}")
        assert await ingress(client, "c") == []
        # Deleting a: its address goes to c.
        await client.delete("v1", "Service", "a", namespace=NS)
        await eventually(has(client, "c", ["198.51.100.9"]), what="released to c")
        # b becomes a ClusterIP Service: its status is cleared, its address free.
        await client.patch("v1", "Service", "b", {"spec": {"type": "ClusterIP",
                                                           "loadBalancerIP": None}},
                           namespace=NS)
        await eventually(has(client, "b", []), what="status cleared")
        await lb(client, "d", loadBalancerIP="198.51.100.10")
        await eventually(has(client, "d", ["198.51.100.10"]), what="reused")
        assert await ingress(client, "plain") == [] and await ingress(client, "classy") == []


async def test_requested_address_taken_or_outside_the_pool(client: Client) -> None:
    async with running(client):
        await lb(client, "a", loadBalancerIP="198.51.100.9")
        await eventually(has(client, "a", ["198.51.100.9"]), what="a")
        await lb(client, "b", loadBalancerIP="198.51.100.9")
        await lb(client, "c", loadBalancerIP="203.0.113.1")
        for name in ("b", "c"):
            async def warned(name: str = name) -> list[JSON]:
                return [e for e in await events(client, name) if e["reason"] == "AllocationFailed"]
            [event] = await eventually(warned, what=f"{name} warned")
            assert "is not free in pool" in event["message"]
        assert await ingress(client, "b") == [] and await ingress(client, "c") == []
        assert await ingress(client, "a") == ["198.51.100.9"]


async def test_restart_resumes_from_the_services(client: Client) -> None:
    async with running(client):
        await lb(client, "a")
        await lb(client, "b")
        await eventually(has(client, "a", ["198.51.100.9"]), what="a")
        await eventually(has(client, "b", ["198.51.100.10"]), what="b")
        rv = (await client.get("v1", "Service", "a", namespace=NS))["metadata"]["resourceVersion"]
    await client.delete("v1", "Service", "b", namespace=NS)  # while no controller runs
    await lb(client, "c")
    async with running(client):
        await eventually(has(client, "c", ["198.51.100.10"]), what="c gets b's address")
        svc = await client.get("v1", "Service", "a", namespace=NS)
        assert svc["metadata"]["resourceVersion"] == rv  # a was left as it was
