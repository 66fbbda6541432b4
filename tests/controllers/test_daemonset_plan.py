"""The DaemonSet controller's pure plan: eligibility, one pod per node,
rolling update budget."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubevisor.controllers import revisions
from kubevisor.controllers.daemonset import (
    CreatePod,
    DeletePod,
    build_pod,
    plan,
    scaled_value,
    should_run,
    target_node,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEMPLATE = {"metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "a:1"}]}}


def ds(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": TEMPLATE, **spec}}


def node(name: str, *, labels: dict[str, str] | None = None,
         taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def pod(node_name: str, *, hash_: str | None = None, ready: bool = True,
        n: int = 0) -> dict[str, Any]:
    p = build_pod(ds(), node_name, hash_ or revisions.template_hash(TEMPLATE))
    p["metadata"].update(name=f"a-{node_name}-{n}", uid=f"{node_name}{n}",
                         creationTimestamp=f"2026-01-01T00:00:0{n}Z")
    p["status"] = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    return p


def test_eligibility() -> None:
    spec = TEMPLATE["spec"]
    assert should_run(spec, node("n")) == (True, True)
    assert should_run(spec, node("n", taints=[{"key": "x", "effect": "NoSchedule"}])) == \
        (False, True)
    assert should_run(spec, node("n", taints=[{"key": "x", "effect": "NoExecute"}])) == \
        (False, False)
    for key in ("node.kubernetes.io/unschedulable", "node.kubernetes.io/disk-pressure"):
        assert should_run(spec, node("n", taints=[{"key": key, "effect": "NoSchedule"}]))[0]
    assert should_run(spec, node("n", taints=[{"key": "node.kubernetes.io/unreachable",
                                                "effect": "NoExecute"}]))[1]
    selective = {**spec, "nodeSelector": {"disk": "ssd"}}
    assert should_run(selective, node("n")) == (False, False)
    assert should_run(selective, node("n", labels={"disk": "ssd"}))[0]
    affinity = {**spec, "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}
    assert not should_run(affinity, node("n", labels={"zone": "b"}))[0]
    assert should_run(affinity, node("n", labels={"zone": "a"}))[0]


def test_pod_is_pinned_and_tolerates() -> None:
    p = build_pod(ds(), "n7", "h")
    assert target_node(p) == "n7" and "nodeName" not in p["spec"]
    assert p["metadata"]["generateName"] == "a-"
    assert p["metadata"]["labels"]["pod-template-generation"] == "2"
    assert len(p["spec"]["tolerations"]) == 6


def test_one_pod_per_eligible_node() -> None:
    result = plan(ds(), [node("n1"), node("n2")], [pod("n1"), pod("n1", n=1), pod("gone")],
                  now=NOW)
    assert [a.node for a in result.actions if isinstance(a, CreatePod)] == ["n2"]
    assert sorted(a.name for a in result.actions if isinstance(a, DeletePod)) == \
        ["a-gone-0", "a-n1-1"]
    assert result.status["desiredNumberScheduled"] == 2
    assert result.status["currentNumberScheduled"] == 1


def test_rolling_update_budget() -> None:
    nodes = [node(f"n{i}") for i in range(4)]
    old = [pod(f"n{i}", hash_="old") for i in range(4)]
    result = plan(ds(), nodes, old, now=NOW)
    assert len([a for a in result.actions if isinstance(a, DeletePod)]) == 1
    spec = {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}}
    assert len([a for a in plan(ds(**spec), nodes, old, now=NOW).actions
                if isinstance(a, DeletePod)]) == 2
    # one node already unavailable uses the budget; an unavailable old pod always goes
    old[0] = pod("n0", hash_="old", ready=False)
    deleted = [a.name for a in plan(ds(), nodes, old, now=NOW).actions
               if isinstance(a, DeletePod)]
    assert deleted == ["a-n0-0"]
    assert plan(ds(updateStrategy={"type": "OnDelete"}), nodes, old, now=NOW).actions == []


def test_scaled_value() -> None:
    assert scaled_value("25%", 10) == 3 and scaled_value(2, 10) == 2 and scaled_value("0%", 5) == 0


def test_max_surge_starts_new_pods_beside_old_ones() -> None:
    nodes = [node(f"n{i}") for i in range(3)]
    spec = {"updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    old = [pod(f"n{i}", hash_="old") for i in range(3)]
    first = plan(ds(**spec), nodes, old, now=NOW)
    assert [(type(a).__name__, getattr(a, "node", "")) for a in first.actions] == [
        ("CreatePod", "n0")], "one node surges, nothing is deleted"
    # the new pod on n0 is not available yet: keep both, surge no further
    fresh = pod("n0", n=1, ready=False)
    second = plan(ds(**spec), nodes, [*old, fresh], now=NOW)
    assert second.actions == []
    assert second.status["updatedNumberScheduled"] == 1
    assert second.status["numberAvailable"] == 3
    # once it is available the old one goes and the next node surges
    fresh = pod("n0", n=1)
    third = plan(ds(**spec), nodes, [*old, fresh], now=NOW)
    assert [a.name for a in third.actions if isinstance(a, DeletePod)] == ["a-n0-0"]
    assert [a.node for a in third.actions if isinstance(a, CreatePod)] == ["n1"]
