"""Pure parts of the garbage collector: the graph and its decisions."""

from __future__ import annotations

from kubevisor.controllers.gc import (
    FOREGROUND,
    ORPHAN,
    Delete,
    Enqueue,
    Graph,
    Node,
    Orphan,
    Owner,
    RemoveFinalizer,
    RemoveOwnerRefs,
    owner_state,
    plan_dependent,
    plan_owner,
)


def obj(kind: str, name: str, uid: str, *, owners: tuple[tuple[str, str, bool], ...] = (),
        deleting: bool = False, finalizers: tuple[str, ...] = ()) -> dict:
    md: dict = {"name": name, "namespace": "ns", "uid": uid,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": k, "name": k.lower(),
                                     "uid": u, "blockOwnerDeletion": b} for k, u, b in owners]}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if finalizers:
        md["finalizers"] = list(finalizers)
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": md}


def test_node_from_object_reads_owner_refs() -> None:
    n = Node.from_object(obj("Pod", "p", "p1", owners=(("ReplicaSet", "rs1", True),),
                             deleting=True, finalizers=(FOREGROUND,)))
    assert n.owners == (Owner("apps/v1", "ReplicaSet", "replicaset", "rs1", True),)
    assert n.waiting_for_dependents
    assert n.owner("rs1") is not None and n.owner("zz") is None


def test_graph_tracks_dependents_through_updates_and_removal() -> None:
    g = Graph()
    g.upsert(Node.from_object(obj("ReplicaSet", "rs", "rs1")))
    g.upsert(Node.from_object(obj("Pod", "a", "p1", owners=(("ReplicaSet", "rs1", True),))))
    g.upsert(Node.from_object(obj("Pod", "b", "p2", owners=(("ReplicaSet", "rs1", True),))))
    assert {d.uid for d in g.dependents("rs1")} == {"p1", "p2"}
    # p2 is re-owned: it leaves rs1's dependents
    g.upsert(Node.from_object(obj("Pod", "b", "p2", owners=(("ReplicaSet", "rs2", True),))))
    assert {d.uid for d in g.dependents("rs1")} == {"p1"}
    assert {d.uid for d in g.dependents("rs2")} == {"p2"}
    assert g.remove("p1") is not None
    assert g.dependents("rs1") == []
    assert g.remove("p1") is None
    assert len(g) == 2


def pod(*owners: tuple[str, bool], finalizers: tuple[str, ...] = ()) -> Node:
    return Node.from_object(obj("Pod", "p", "p1", owners=tuple(("ReplicaSet", u, b)
                                                             for u, b in owners),
                                finalizers=finalizers))


def test_owner_state() -> None:
    assert owner_state(None) == "dangling"
    assert owner_state(Node.from_object(obj("ReplicaSet", "r", "r1"))) == "solid"
    assert owner_state(Node.from_object(obj("ReplicaSet", "r", "r1", deleting=True))) == "solid"
    assert owner_state(Node.from_object(obj("ReplicaSet", "r", "r1", deleting=True,
                                            finalizers=(FOREGROUND,)))) == "waiting"


def test_plan_dependent() -> None:
    p = pod(("r1", True))
    assert plan_dependent(p, {"r1": "solid"}, has_dependents=False) is None
    assert plan_dependent(p, {"r1": "dangling"}, has_dependents=False) == Delete("Background")
    assert plan_dependent(p, {"r1": "waiting"}, has_dependents=False) == Delete("Background")
    assert plan_dependent(p, {"r1": "waiting"}, has_dependents=True) == Delete("Foreground")
    two = pod(("r1", True), ("r2", False))
    assert plan_dependent(two, {"r1": "dangling", "r2": "solid"}, has_dependents=False) == (
        RemoveOwnerRefs(frozenset({"r1"})))
    assert plan_dependent(two, {"r1": "waiting", "r2": "solid"}, has_dependents=True) == (
        RemoveOwnerRefs(frozenset({"r1"})))
    assert plan_dependent(pod(("r1", True), finalizers=(ORPHAN,)), {"r1": "dangling"},
                          has_dependents=True) == Delete("Orphan")
    assert plan_dependent(pod(), {}, has_dependents=False) is None


def test_plan_owner_foreground_waits_for_blocking_dependents_only() -> None:
    owner = Node.from_object(obj("ReplicaSet", "r", "r1", deleting=True,
                                 finalizers=(FOREGROUND,)))
    blocking = pod(("r1", True))
    loose = Node.from_object(obj("Pod", "q", "p2", owners=(("ReplicaSet", "r1", False),)))
    assert plan_owner(owner, [blocking, loose]) == [Enqueue(("p1", "p2"))]
    assert plan_owner(owner, [loose]) == [RemoveFinalizer(FOREGROUND)]
    assert plan_owner(owner, []) == [RemoveFinalizer(FOREGROUND)]


def test_plan_owner_orphan_and_plain() -> None:
    owner = Node.from_object(obj("ReplicaSet", "r", "r1", deleting=True, finalizers=(ORPHAN,)))
    dep = pod(("r1", True))
    assert plan_owner(owner, [dep]) == [Orphan((dep,)), RemoveFinalizer(ORPHAN)]
    assert plan_owner(Node.from_object(obj("ReplicaSet", "r", "r1")), [dep]) == []
    assert plan_owner(Node.from_object(obj("ReplicaSet", "r", "r1", deleting=True)), [dep]) == []
