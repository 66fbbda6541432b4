"""The pure parts of the ReplicaSet controller: how many pods to make,
which to delete first, the status, slow-start batches, the pod made from
a template, expectations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubevisor.controllers.expectations import Expectations
from kubevisor.controllers.podtemplate import pod_from_template
from kubevisor.controllers.replicaset import (
    calculate_status,
    plan,
    pods_to_delete,
    slow_start_batch,
)

JSON = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rs(replicas: int = 3, **spec: Any) -> JSON:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 4},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}},
                     **spec}}


def pod(name: str, *, created: float = 100, node: str | None = "n1", phase: str = "Running",
        ready_since: float | None = 50, restarts: int = 0,
        labels: dict[str, str] | None = None) -> JSON:
    status: JSON = {"phase": phase, "conditions": [], "containerStatuses": [
        {"name": "c", "restartCount": restarts}]}
    if ready_since is not None:
        status["conditions"] = [{"type": "Ready", "status": "True",
                                 "lastTransitionTime": stamp(ready_since)}]
    spec: JSON = {"nodeName": node} if node else {}
    return {"metadata": {"name": name, "creationTimestamp": stamp(created), "uid": name,
                         "labels": labels if labels is not None else {"app": "web", "tier": "x"}},
            "spec": spec, "status": status}


def test_plan_counts_what_is_missing_or_surplus() -> None:
    assert plan(rs(3), [pod("a")]).create == 2
    assert plan(rs(1000), [], burst=500).create == 500
    assert plan(rs(2), [pod("a"), pod("b")]).create == 0
    surplus = plan(rs(1), [pod("a", ready_since=None), pod("b")])
    assert [p["metadata"]["name"] for p in surplus.delete] == ["a"]


def test_deletion_order_unscheduled_pending_unready_then_newest() -> None:
    pods = [
        pod("old-ready", created=300, ready_since=200),
        pod("new-ready", created=10, ready_since=5),
        pod("unready", created=400, ready_since=None),
        pod("pending", created=500, phase="Pending", ready_since=None),
        pod("unscheduled", created=600, node=None, phase="Pending", ready_since=None),
        pod("crashy", created=300, ready_since=200, restarts=4),
    ]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, 6)]
    assert order == ["unscheduled", "pending", "unready", "new-ready", "crashy", "old-ready"]
    assert [p["metadata"]["name"] for p in pods_to_delete(pods, 2)] == ["unscheduled",
                                                                         "pending"]


def test_status_counts_and_min_ready_seconds() -> None:
    pods = [pod("a", ready_since=100), pod("b", ready_since=5), pod("c", ready_since=None),
            pod("d", labels={"app": "web"})]  # selected but not fully labelled
    st = calculate_status(rs(4, minReadySeconds=10), pods, now=NOW)
    assert st == {"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 3,
                  "availableReplicas": 2, "observedGeneration": 4}
    # zero counts are left out, as kube's omitempty fields
    assert calculate_status(rs(0), [], now=NOW) == {"replicas": 0, "observedGeneration": 4}


def test_replica_failure_condition_set_once_and_cleared() -> None:
    st = calculate_status(rs(3), [pod("a")], now=NOW, error="quota exceeded")
    [cond] = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "ReplicaFailure", "True", "FailedCreate", "quota exceeded")
    failing = rs(3)
    failing["status"] = st
    again = calculate_status(failing, [pod("a")], now=NOW + timedelta(seconds=9), error="other")
    assert again["conditions"] == st["conditions"]  # kube keeps the first failure
    assert "conditions" not in calculate_status(failing, [pod("a")], now=NOW)


async def test_slow_start_batches_double_and_stop_at_the_first_failing_batch() -> None:
    calls: list[int] = []

    async def ok() -> None:
        calls.append(1)

    assert await slow_start_batch(10, ok) == (10, None)
    assert len(calls) == 10
    n = 0

    async def fails_after_four() -> None:
        nonlocal n
        n += 1
        if n > 4:
            raise RuntimeError("quota")

    done, err = await slow_start_batch(20, fails_after_four)
    # batches of 1 and 2 succeed, one call of the batch of 4 does: 4 pods
    assert done == 4 and isinstance(err, RuntimeError)
    assert n == 7  # 1 + 2 + 4 attempted, the batch of 8 never started


def test_pod_from_template() -> None:
    owner = rs(1)
    owner["spec"]["template"]["metadata"]["annotations"] = {"a": "b"}
    body = pod_from_template(owner, owner["spec"]["template"])
    md = body["metadata"]
    assert md["generateName"] == "web-" and "name" not in md
    assert md["namespace"] == "ns"
    assert md["labels"] == {"app": "web", "tier": "x"} and md["annotations"] == {"a": "b"}
    assert md["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "web", "uid": "rs-uid", "controller": True,
                                      "blockOwnerDeletion": True}]
    assert body["spec"] == owner["spec"]["template"]["spec"]
    assert body["spec"] is not owner["spec"]["template"]["spec"]


def test_expectations() -> None:
    clock = [0.0]
    exp = Expectations(ttl=300, clock=lambda: clock[0])
    key = ("ns", "web")
    assert exp.satisfied(key)
    exp.expect(key, adds=2)
    assert not exp.satisfied(key)
    exp.creation_observed(key)
    assert not exp.satisfied(key)
    exp.creation_observed(key)
    assert exp.satisfied(key)
    exp.expect(key, deletes=["u1", "u2"])
    exp.deletion_observed(key, "u1")
    assert exp.pending(key) == (0, 1) and not exp.satisfied(key)
    clock[0] = 301.0
    assert exp.satisfied(key)  # lost events do not block forever
