"""The node lifecycle controller on a real apiserver with an injected clock:
a node whose Lease is not renewed goes Unknown and is tainted, its pods
lose Ready and are evicted when their tolerations run out; a renewed lease
brings it back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client, NotFoundError
from kubevisor.controllers.nodelifecycle import NodeLifecycleController
from tests.client.live import live_apiserver, require_apiserver
from tests.controllers.nodeplay import eventually, namespace, node, run_ready


@dataclass
class Clock:
    """Real time plus an offset the test moves forward."""

    offset: float = 0.0

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


@dataclass
class Env:
    api: Client
    clock: Clock
    controller: NodeLifecycleController


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """An apiserver with only this controller running, on a fake clock."""
    require_apiserver()
    async with live_apiserver(tmp_path) as live, Client.from_kubeconfig(live.kubeconfig) as api:
        clock = Clock()
        controller = NodeLifecycleController(api, clock=clock)
        task = asyncio.create_task(controller.run())
        try:
            yield Env(api, clock, controller)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def renew(api: Client, name: str, at: datetime) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": name, "namespace": "kube-node-lease"},
             "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                      "renewTime": stamp(at)}}
    try:
        current = await api.get("coordination.k8s.io/v1", "Lease", name,
                                namespace="kube-node-lease")
    except NotFoundError:
        await api.create(lease)
        return
    current["spec"]["renewTime"] = stamp(at)
    await api.update(current)


def pod(name: str, node_name: str, tolerations: list[dict[str, Any]] | None = None) -> dict:
    spec: dict[str, Any] = {"nodeName": node_name,
                            "containers": [{"name": "c", "image": "busybox"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "work"},
            "spec": spec}


async def ready_condition(api: Client, name: str) -> dict[str, Any]:
    got = await api.get("v1", "Node", name)
    return next(c for c in got["status"]["conditions"] if c["type"] == "Ready")


async def taints(api: Client, name: str) -> set[tuple[str, str]]:
    got = await api.get("v1", "Node", name)
    return {(t["key"], t["effect"]) for t in got["spec"].get("taints") or ()}


async def exists(api: Client, name: str) -> bool:
    try:
        got = await api.get("v1", "Pod", name, namespace="work")
    except NotFoundError:
        return False
    return not got["metadata"].get("deletionTimestamp")


async def test_expired_lease_marks_unknown_taints_and_evicts(env: Env) -> None:
    api, clock = env.api, env.clock
    await namespace(api, "kube-node-lease")
    await namespace(api, "work")
    await api.create(node("h1"))
    await api.create(node("h2"))
    await renew(api, "h1", clock())
    await renew(api, "h2", clock())
    # default tolerations (300 s, from the apiserver), a short one, none at all
    # (a NoExecute taint tolerated by nothing evicts at once), and forever
    created = await api.create(pod("default", "h1"))
    tol_keys = {t["key"]: t.get("tolerationSeconds") for t in created["spec"]["tolerations"]}
    assert tol_keys.get("node.kubernetes.io/unreachable") == 300, \
        "the apiserver adds DefaultTolerationSeconds"
    await api.create(pod("short", "h1", [{"key": "node.kubernetes.io/unreachable",
                                          "operator": "Exists", "effect": "NoExecute",
                                          "tolerationSeconds": 10}]))
    await api.create(pod("forever", "h1", [{"key": "node.kubernetes.io/unreachable",
                                            "operator": "Exists", "effect": "NoExecute"}]))
    await api.create(pod("elsewhere", "h2"))
    for name in ("default", "short", "forever", "elsewhere"):
        await run_ready(api, "work", name)
    await asyncio.sleep(0.3)  # the controller has seen both leases

    # 30 s later h2 renewed, h1 did not: nothing yet; at 41 s h1 is overdue
    clock.offset = 30
    await renew(api, "h2", clock())
    await asyncio.sleep(0.3)
    assert (await ready_condition(api, "h1"))["status"] == "True"
    clock.offset = 41
    await renew(api, "h2", clock())
    env.controller.controller.queue.add("h1")

    async def unknown() -> dict[str, Any] | None:
        cond = await ready_condition(api, "h1")
        return cond if cond["status"] == "Unknown" else None

    cond = await eventually(unknown, what="h1 Ready=Unknown")
    assert cond["reason"] == "NodeStatusUnknown"
    assert cond["message"] == "Kubelet stopped posting node status."
    await eventually(lambda: _has_taints(api, "h1", {
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule")}), what="unreachable taints")
    assert (await ready_condition(api, "h2"))["status"] == "True"
    assert not await taints(api, "h2")

    async def pods_not_ready() -> bool:
        got = await api.get("v1", "Pod", "default", namespace="work")
        return any(c["type"] == "Ready" and c["status"] == "False"
                   for c in got["status"]["conditions"])

    await eventually(pods_not_ready, what="pods on h1 not ready")
    assert await exists(api, "default") and await exists(api, "short")

    # the short toleration runs out at +10 s, the default one at +300 s
    clock.offset = 41 + 11
    env.controller.controller.queue.add("h1")

    async def short_gone() -> bool:
        return not await exists(api, "short")

    await eventually(short_gone, what="pod with tolerationSeconds=10 evicted")
    assert await exists(api, "default")
    clock.offset = 41 + 301
    env.controller.controller.queue.add("h1")

    async def default_gone() -> bool:
        return not await exists(api, "default")

    await eventually(default_gone, what="pod with the default 300 s evicted")
    assert await exists(api, "forever") and await exists(api, "elsewhere")

    async def events() -> set[tuple[str, str]] | None:
        listed = await api.list("v1", "Event", namespace="work",
                                field_selector="involvedObject.name=default")
        got = {(e["reason"], e["message"]) for e in listed["items"]}
        return got if len(got) >= 2 else None

    assert await eventually(events, what="pod events") == {
        ("NodeNotReady", "Node is not ready"),
        ("TaintManagerEviction", "Marking for deletion Pod work/default")}

    # the agent comes back: posts Ready and renews; the taints go
    await renew(api, "h1", clock())
    got = await api.get("v1", "Node", "h1")
    for c in got["status"]["conditions"]:
        if c["type"] == "Ready":
            c.update(status="True", reason="KubeletReady", lastHeartbeatTime=stamp(clock()))
    await api.update_status(got)
    await eventually(lambda: _has_taints(api, "h1", set()), what="taints removed")


async def test_not_ready_node_is_tainted_at_once(env: Env) -> None:
    api = env.api
    await api.create(node("sick", ready=False))
    await eventually(lambda: _has_taints(api, "sick", {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/not-ready", "NoSchedule")}), what="not-ready taints")
    await api.patch("v1", "Node", "sick", {"spec": {"unschedulable": True}})
    await eventually(lambda: _has_taints(api, "sick", {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/not-ready", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule")}), what="cordon taint")


async def _has_taints(api: Client, name: str, expected: set[tuple[str, str]]) -> bool:
    return await taints(api, name) == expected


async def test_pods_of_a_deleted_node_are_collected_after_the_quarantine(env: Env) -> None:
    api, clock = env.api, env.clock
    await namespace(api, "work")
    await api.create(node("gone"))
    await api.create(pod("stranded", "gone"))
    await run_ready(api, "work", "stranded")
    await api.delete("v1", "Node", "gone")
    await asyncio.sleep(0.5)
    assert await exists(api, "stranded"), "deleted before the quarantine"
    clock.offset = 41
    env.controller.controller.queue.add("gone")

    async def stranded_gone() -> bool:
        try:
            await api.get("v1", "Pod", "stranded", namespace="work")
        except NotFoundError:
            return True
        return False

    await eventually(stranded_gone, what="orphaned pod deleted for good")
