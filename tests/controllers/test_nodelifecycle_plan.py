"""The node lifecycle controller's pure parts: overdue nodes, taints from
conditions, eviction times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubevisor.controllers.nodelifecycle import (
    Evict,
    MarkNotReady,
    node_conditions,
    node_taints,
    plan_pods,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def node(ready: str | None = "True", *, taints: list[dict[str, Any]] | None = None,
         **spec: Any) -> dict[str, Any]:
    conds = [] if ready is None else [{"type": "Ready", "status": ready},
                                      {"type": "MemoryPressure", "status": "False"}]
    return {"metadata": {"name": "n", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"taints": taints or [], **spec}, "status": {"conditions": conds}}


def pod(name: str, tolerations: list[dict[str, Any]] | None = None,
        ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "w", "uid": name},
            "spec": {"nodeName": "n", "tolerations": tolerations or []},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_overdue_after_the_grace_period() -> None:
    conds, recheck = node_conditions(node(), last_seen=T0, now=T0 + timedelta(seconds=39))
    assert conds is None and recheck is not None and 1 <= recheck <= 1.1
    conds, _ = node_conditions(node(), last_seen=T0, now=T0 + timedelta(seconds=41))
    assert conds is not None
    assert [(c["type"], c["status"], c["reason"]) for c in conds] == [
        ("Ready", "Unknown", "NodeStatusUnknown"),
        ("MemoryPressure", "Unknown", "NodeStatusUnknown")]
    assert conds[0]["message"] == "Kubelet stopped posting node status."
    never, _ = node_conditions(node(None), last_seen=T0, now=T0 + timedelta(seconds=50))
    assert never is None
    never, _ = node_conditions(node(None), last_seen=T0, now=T0 + timedelta(seconds=61))
    assert never is not None and never[0]["reason"] == "NodeStatusNeverUpdated"


def test_taints_follow_conditions_and_keep_others() -> None:
    mine = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    taints = node_taints(node("Unknown", taints=[mine]), now=T0)
    assert taints is not None
    assert {(t["key"], t["effect"]) for t in taints} == {
        ("dedicated", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule")}
    assert next(t for t in taints if t["effect"] == "NoExecute")["timeAdded"] == \
        "2026-01-01T00:00:00Z"
    # already right: unchanged (timeAdded kept)
    assert node_taints(node("Unknown", taints=taints), now=T0 + timedelta(seconds=9)) is None
    healed = node_taints(node("True", taints=taints), now=T0)
    assert healed == [mine]
    cordoned = node_taints(node("True", unschedulable=True), now=T0)
    assert cordoned == [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert node_taints(node("True"), now=T0) is None


def test_pods_evicted_when_their_tolerations_run_out() -> None:
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
             "timeAdded": "2026-01-01T00:00:00Z"}
    tainted = node("Unknown", taints=[taint])
    default = pod("default", [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                               "effect": "NoExecute", "tolerationSeconds": 300}])
    forever = pod("forever", [{"operator": "Exists"}])
    bare = pod("bare")
    early = plan_pods(tainted, [default, forever, bare], now=T0 + timedelta(seconds=100))
    assert Evict("bare", "w", "bare") in early.actions
    assert not any(isinstance(a, Evict) and a.name != "bare" for a in early.actions)
    assert {a.pod["metadata"]["name"] for a in early.actions if isinstance(a, MarkNotReady)} \
        == {"default", "forever"}
    assert early.requeue_after == 200
    late = plan_pods(tainted, [default, forever], now=T0 + timedelta(seconds=300))
    assert [a for a in late.actions if isinstance(a, Evict)] == [Evict("default", "w", "default")]
    healthy = plan_pods(node("True"), [pod("p")], now=T0)
    assert healthy.actions == []
