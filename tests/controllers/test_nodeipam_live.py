"""Node IPAM against a real apiserver: nodes get distinct /24s of the
cluster CIDR, a restarted controller recovers what is taken from the Nodes,
a deleted Node's block is reused, a Node's own podCIDR is respected, and
exhaustion is reported with a CIDRNotAvailable event. Plus the pure
CIDRSet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client
from kubevisor.controllers.nodeipam import CIDRSet, NodeIPAMController, node_cidrs
from tests.client.live import live_apiserver, require_apiserver


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Client]:
    require_apiserver()
    async with live_apiserver(tmp_path) as live:
        async with Client.from_kubeconfig(live.kubeconfig) as client:
            await client.create({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "default"}})  # for Events
            yield client


@contextlib.asynccontextmanager
async def ipam(client: Client, cluster_cidr: str = "10.200.0.0/16",
               node_mask: int = 24) -> AsyncIterator[NodeIPAMController]:
    controller = NodeIPAMController(client, cluster_cidr=cluster_cidr, node_mask=node_mask)
    task = asyncio.create_task(controller.run())
    try:
        yield controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _node(client: Client, name: str, pod_cidr: str | None = None) -> None:
    spec = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]} if pod_cidr else {}
    await client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                         "spec": spec})


async def _until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _cidrs(client: Client, *names: str) -> dict[str, str] | None:
    out = {}
    for name in names:
        node = await client.get("v1", "Node", name)
        cidrs = node_cidrs(node)
        if not cidrs:
            return None
        assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]
        out[name] = cidrs[0]
    return out


async def test_distinct_blocks_restart_and_release(admin: Client) -> None:
    async with ipam(admin):
        for name in ("a", "b", "c"):
            await _node(admin, name)
        got = await _until(lambda: _cidrs(admin, "a", "b", "c"))
    assert sorted(got.values()) == ["10.200.0.0/24", "10.200.1.0/24", "10.200.2.0/24"]
    # A new controller knows what the Nodes hold: the next node gets a new block.
    async with ipam(admin) as again:
        await _node(admin, "d")
        d = (await _until(lambda: _cidrs(admin, "d")))["d"]
        assert d == "10.200.3.0/24"
        assert again.cidrs.taken() == ["10.200.0.0/24", "10.200.1.0/24", "10.200.2.0/24",
                                       "10.200.3.0/24"]
        # Deleting a Node frees its block for the next one.
        await admin.delete("v1", "Node", "b")
        await _node(admin, "e")
        e = (await _until(lambda: _cidrs(admin, "e")))["e"]
        assert e == got["b"]


async def test_own_pod_cidr_respected(admin: Client) -> None:
    await _node(admin, "own", "10.200.0.0/24")
    async with ipam(admin):
        await _node(admin, "other")
        got = await _until(lambda: _cidrs(admin, "own", "other"))
    assert got == {"own": "10.200.0.0/24", "other": "10.200.1.0/24"}


async def test_exhausted_range_warns_then_recovers(admin: Client) -> None:
    async with ipam(admin, cluster_cidr="10.201.0.0/23", node_mask=24):
        for name in ("x", "y", "z"):
            await _node(admin, name)

        async def warned() -> list[dict[str, Any]]:
            events = (await admin.list("v1", "Event", namespace="default"))["items"]
            return [e for e in events if e["reason"] == "CIDRNotAvailable"]

        assert len(await _until(warned)) == 1
        holders = await _until(lambda: _holders(admin))
        waiting = ({"x", "y", "z"} - set(holders)).pop()
        await admin.delete("v1", "Node", holders[0])
        got = await _until(lambda: _cidrs(admin, waiting))
        assert got[waiting] == (await _cidrs_of(admin))[waiting]


async def _holders(client: Client) -> list[str] | None:
    nodes = (await client.list("v1", "Node"))["items"]
    held = sorted(n["metadata"]["name"] for n in nodes if node_cidrs(n))
    return held if len(held) == 2 else None


async def _cidrs_of(client: Client) -> dict[str, str]:
    nodes = (await client.list("v1", "Node"))["items"]
    return {n["metadata"]["name"]: node_cidrs(n)[0] for n in nodes if node_cidrs(n)}


def test_cidr_set() -> None:
    cidrs = CIDRSet("10.88.0.0/22", node_mask=24)
    assert cidrs.count == 4
    assert cidrs.occupy("10.88.1.0/24") and not cidrs.occupy("10.99.0.0/24")
    assert not cidrs.occupy("10.88.0.0/25")  # not a block of this size
    assert [cidrs.allocate() for _ in range(4)] == ["10.88.0.0/24", "10.88.2.0/24",
                                                    "10.88.3.0/24", None]
    cidrs.release("10.88.2.0/24")
    assert cidrs.allocate() == "10.88.2.0/24"
    assert node_cidrs({"spec": {"podCIDR": "10.88.0.0/24"}}) == ["10.88.0.0/24"]
