"""VirtualMachine behaviour other parts rely on, through a real apiserver over
HTTPS with the project's client: list and watch by the ``status.nodeName``
field selector (what node agents watch), and ``spec.nextRestartTime: now``
(any case) turned into the server's time on create and on update.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.client import Client
from kubevisor.client.errors import BadRequestError
from tests.client.live import live_apiserver, require_apiserver

V = "vmoperator.vmware.com/v1alpha6"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    require_apiserver()
    async with live_apiserver(tmp_path) as live, \
            Client.from_kubeconfig(live.kubeconfig) as c:
        await c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
        yield c


def vm(name: str, **spec: object) -> dict:
    return {"apiVersion": V, "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"className": "small", "imageName": "img", **spec}}


async def place(client: Client, name: str, node: str) -> None:
    obj = await client.get(V, "VirtualMachine", name, namespace="ns")
    obj.setdefault("status", {})["nodeName"] = node
    await client.update_status(obj)


async def test_list_by_status_node_name(client: Client) -> None:
    for name in ("a", "b", "c"):
        await client.create(vm(name))
    await place(client, "a", "n1")
    await place(client, "b", "n2")

    def names(lst: dict) -> list[str]:
        return sorted(i["metadata"]["name"] for i in lst["items"])

    assert names(await client.list(V, "VirtualMachine", namespace="ns",
                                   field_selector="status.nodeName=n1")) == ["a"]
    assert names(await client.list(V, "VirtualMachine",
                                   field_selector="status.nodeName=n2")) == ["b"]
    assert names(await client.list(V, "VirtualMachine", namespace="ns",
                                   field_selector="status.nodeName=")) == ["c"]
    assert names(await client.list(V, "VirtualMachine", namespace="ns",
                                   field_selector="status.nodeName!=n1")) == ["b", "c"]
    # Only the declared fields are selectable, as kube-apiserver answers.
    with pytest.raises(BadRequestError, match=r"field label not supported: status\.powerState"):
        await client.list(V, "VirtualMachine", field_selector="status.powerState=PoweredOn")


async def test_watch_by_status_node_name_sees_only_its_node(client: Client) -> None:
    await client.create(vm("a"))
    await client.create(vm("b"))
    seen: list[tuple[str, str, str]] = []
    synced = asyncio.Event()
    got_b = asyncio.Event()

    async def watch() -> None:
        async for etype, obj in client.watch(V, "VirtualMachine",
                                             field_selector="status.nodeName=n2"):
            if etype == "BOOKMARK":
                synced.set()
                continue
            seen.append((etype, obj["metadata"]["name"],
                         (obj.get("status") or {}).get("nodeName", "")))
            if obj["metadata"]["name"] == "b":
                got_b.set()

    task = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(synced.wait(), 10)
        await place(client, "a", "n1")
        await place(client, "b", "n2")
        await asyncio.wait_for(got_b.wait(), 10)
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [(n, node) for _, n, node in seen] == [("b", "n2")]


async def test_next_restart_time_now_on_create_and_update(client: Client) -> None:
    created = await client.create(vm("a", nextRestartTime="Now"))
    first = created["spec"]["nextRestartTime"]
    assert RFC3339_UTC.match(first), first

    created["spec"]["nextRestartTime"] = "NOW"
    await asyncio.sleep(0.01)
    updated = await client.update(created)
    second = updated["spec"]["nextRestartTime"]
    assert RFC3339_UTC.match(second) and second > first, (first, second)

    # A time (or anything else) is kept as written.
    updated["spec"]["nextRestartTime"] = "2030-01-02T03:04:05Z"
    kept = await client.update(updated)
    assert kept["spec"]["nextRestartTime"] == "2030-01-02T03:04:05Z"
    other = await client.create(vm("b"))
    assert "nextRestartTime" not in other["spec"]
