"""The pure parts of the Endpoints and EndpointSlice controllers: packing,
capacity, slice sizes and placement, the placeholder, trigger times."""

from __future__ import annotations

from typing import Any

from kubevisor.controllers import endpoints, endpointslices
from kubevisor.controllers import servicebackends as sb

JSON = dict[str, Any]
NOW = "2026-01-01T00:00:00Z"


def svc(**spec: Any) -> JSON:
    return {"metadata": {"name": "web", "namespace": "d", "uid": "svc-uid",
                         "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.9",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                "protocol": "TCP"}], **spec}}


def pod(i: int, *, ready: bool = True, phase: str = "Running", labels: JSON | None = None,
        ports: list[JSON] | None = None, ip: str | None = None) -> JSON:
    return {"metadata": {"name": f"p{i}", "namespace": "d", "uid": f"uid-{i}",
                         "labels": labels or {"app": "web"},
                         "creationTimestamp": "2025-06-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": phase, "podIP": ip if ip is not None else f"10.1.{i // 250}.{i % 250 + 1}",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": "2025-07-01T00:00:00Z"}]}}


def test_pods_left_out_and_ports_resolved() -> None:
    pods = [pod(1), pod(2, phase="Succeeded"), pod(3, ip=""), pod(4, labels={"app": "x"}),
            {**pod(5), "metadata": {**pod(5)["metadata"], "deletionTimestamp": NOW}}]
    chosen = sb.backends(svc(), pods, include_terminating=False)
    assert [b.pod["metadata"]["name"] for b in chosen] == ["p1"]
    named = svc(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    p = pod(6, ports=[{"name": "web", "containerPort": 9000, "protocol": "UDP"},
                      {"name": "web", "containerPort": 9001}])
    assert sb.backends(named, [p], include_terminating=False)[0].ports == (
        ("http", 9001, "TCP", ""),)
    assert sb.backends(named, [pod(7)], include_terminating=False) == []


def test_endpoints_plan_and_no_change() -> None:
    body = endpoints.plan(svc(), [pod(1), pod(2, ready=False)], None, now=NOW)
    assert body is not None
    assert [a["ip"] for a in body["subsets"][0]["addresses"]] == ["10.1.0.2"]
    assert [a["ip"] for a in body["subsets"][0]["notReadyAddresses"]] == ["10.1.0.3"]
    assert body["metadata"]["annotations"][sb.TRIGGER_TIME] == "2025-07-01T00:00:00Z"
    assert endpoints.plan(svc(), [pod(1), pod(2, ready=False)], body, now=NOW) is None
    # A pod gone: the trigger time is when the controller saw it go.
    later = endpoints.plan(svc(), [pod(1)], body, now="2026-02-02T00:00:00Z")
    assert later is not None
    assert later["metadata"]["annotations"][sb.TRIGGER_TIME] == "2026-02-02T00:00:00Z"
    assert endpoints.plan(svc(selector=None), [pod(1)], None, now=NOW) is None


def test_endpoints_capped_at_a_thousand() -> None:
    body = endpoints.plan(svc(), [pod(i) for i in range(1100)], None, now=NOW)
    assert body is not None
    assert sum(len(s.get("addresses") or ()) for s in body["subsets"]) == 1000
    assert body["metadata"]["annotations"][endpoints.OVER_CAPACITY] == "truncated"


def _apply(existing: list[JSON], todo: endpointslices.SlicePlan) -> list[JSON]:
    """What the store would hold after ``todo`` (names for created slices)."""
    by_name = {s["metadata"]["name"]: s for s in existing}
    for name in todo.delete:
        by_name.pop(name, None)
    for body in todo.update:
        by_name[body["metadata"]["name"]] = body
    for i, body in enumerate(todo.create):
        body = {**body, "metadata": {**body["metadata"], "name": f"web-new{len(by_name)}-{i}"}}
        by_name[body["metadata"]["name"]] = body
    return list(by_name.values())


def test_slices_hold_at_most_a_hundred_and_keep_placement() -> None:
    pods = [pod(i) for i in range(250)]
    todo = endpointslices.plan(svc(), pods, [], now=NOW)
    assert [len(s["endpoints"]) for s in todo.create] == [100, 100, 50]
    stored = _apply([], todo)
    # One pod goes, two come: one slice changes for the loss, the new ones
    # fill the slice with room; nothing else is written.
    pods2 = [p for p in pods if p["metadata"]["name"] != "p7"] + [pod(300), pod(301)]
    todo = endpointslices.plan(svc(), pods2, stored, now=NOW)
    assert not todo.create and not todo.delete
    stored = _apply(stored, todo)
    sizes = sorted(len(s["endpoints"]) for s in stored)
    assert sizes == [52, 99, 100] or sizes == [51, 100, 100]
    assert sum(sizes) == 251
    assert not endpointslices.plan(svc(), pods2, stored, now=NOW)  # settled


def test_slices_split_by_port_set_and_placeholder() -> None:
    named = svc(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    pods = [pod(1, ports=[{"name": "web", "containerPort": 8080}]),
            pod(2, ports=[{"name": "web", "containerPort": 9090}])]
    todo = endpointslices.plan(named, pods, [], now=NOW)
    assert sorted(s["ports"][0]["port"] for s in todo.create) == [8080, 9090]
    stored = _apply([], todo)
    todo = endpointslices.plan(named, [], stored, now=NOW)
    # One slice becomes the empty placeholder, the other goes.
    assert len(todo.update) == 1 and len(todo.delete) == 1 and not todo.create
    assert todo.update[0]["endpoints"] == [] and todo.update[0]["ports"] == []
    stored = _apply(stored, todo)
    assert not endpointslices.plan(named, [], stored, now=NOW)
    # Slices of another (older) Service of the same name go.
    other = {**svc(), "metadata": {**svc()["metadata"], "uid": "new-uid"}}
    todo = endpointslices.plan(other, [], stored, now=NOW)
    assert todo.delete == [stored[0]["metadata"]["name"]] and len(todo.create) == 1
