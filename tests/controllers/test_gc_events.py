"""What the garbage collector enqueues for each watch event (no server:
the handlers only touch the graph and the queue)."""

from __future__ import annotations

from kubevisor.client import Client
from kubevisor.controllers.gc import FOREGROUND, GarbageCollector


def obj(name: str, uid: str, *owners: str, deleting: bool = False,
        finalizers: tuple[str, ...] = ()) -> dict:
    md: dict = {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "1",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": o,
                                     "uid": o, "blockOwnerDeletion": True} for o in owners]}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if finalizers:
        md["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md}


def drain(gc: GarbageCollector) -> set[str]:
    q = gc.controller.queue
    out = set(q._dirty)
    q._dirty.clear()
    return out


async def test_enqueues_only_what_needs_a_look() -> None:
    async with Client("https://127.0.0.1:1") as client:
        gc = GarbageCollector(client)
        gc._on_event("ADDED", obj("owner", "o1"), None)
        assert drain(gc) == set()  # no owners, not deleting
        gc._on_event("ADDED", obj("dep", "d1", "o1"), None)
        assert drain(gc) == set()  # its owner is known and solid
        gc._on_event("ADDED", obj("stray", "d2", "ghost"), None)
        assert drain(gc) == {"d2"}  # owner unknown: verify
        # the owner starts a foreground deletion: it and its dependents
        gc._on_event("MODIFIED", obj("owner", "o1", deleting=True, finalizers=(FOREGROUND,)),
                     None)
        assert drain(gc) == {"o1", "d1"}
        # a dependent goes: its owner may now proceed
        gc._on_event("DELETED", obj("dep", "d1", "o1"), None)
        assert drain(gc) == {"o1"}
        # the owner goes: dependents left behind are re-examined
        gc._on_event("ADDED", obj("late", "d3", "o1"), None)
        drain(gc)
        gc._on_event("DELETED", obj("owner", "o1"), None)
        assert drain(gc) == {"d3"}
        assert "o1" in gc._absent
        # a dependent drops its reference: the old owner is told
        gc._on_event("ADDED", obj("o2", "o2"), None)
        gc._on_event("ADDED", obj("dep2", "d4", "o2"), None)
        drain(gc)
        gc._on_event("MODIFIED", obj("dep2", "d4"), None)
        assert drain(gc) == {"o2"}
        gc.controller.queue.shut_down()


async def test_reconcile_skips_objects_whose_owners_are_solid() -> None:
    async with Client("https://127.0.0.1:1") as client:  # nothing listens: no call may happen
        gc = GarbageCollector(client)
        gc._on_event("ADDED", obj("owner", "o1"), None)
        gc._on_event("ADDED", obj("dep", "d1", "o1"), None)
        assert await gc.reconcile("d1") is None
        assert await gc.reconcile("unknown") is None
