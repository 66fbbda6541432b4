"""Claiming dependents by selector: adopt orphans, release strays.

kube's ControllerRefManager, for a controller (ReplicaSet over Pods,
Deployment over ReplicaSets): of the candidates in its namespace, it
keeps those whose controller reference is its uid and whose labels still
match; it adopts those with no controller that match (unless the owner or
the candidate is being deleted); it releases those it controls that no
longer match. :func:`claim` decides (pure); :func:`adopt` and
:func:`release` write the owner references through a JSON patch guarded
by the candidate's resourceVersion (a stale view costs a retry, never a
lost update). Called by replicaset.py and deployment.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubevisor.api.meta import controller_of, owner_reference
from kubevisor.api.selectors import LabelSelector
from kubevisor.client import Client, ConflictError, InvalidError, NotFoundError

JSON = dict[str, Any]


@dataclass(slots=True)
class Claim:
    owned: list[JSON] = field(default_factory=list)  # already ours and matching
    adopt: list[JSON] = field(default_factory=list)  # orphans that match
    release: list[JSON] = field(default_factory=list)  # ours, no longer matching


def claim(owner: JSON, selector: LabelSelector, candidates: Iterable[JSON]) -> Claim:
    """Sort ``candidates`` (same namespace as ``owner``) into owned/adopt/release."""
    uid = owner["metadata"]["uid"]
    owner_deleting = bool(owner["metadata"].get("deletionTimestamp"))
    out = Claim()
    for obj in candidates:
        md = obj.get("metadata") or {}
        matches = selector.matches(md.get("labels") or {})
        ref = controller_of(obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches:
                out.owned.append(obj)
            elif not owner_deleting:
                out.release.append(obj)
            continue
        if matches and not owner_deleting and not md.get("deletionTimestamp"):
            out.adopt.append(obj)
    return out


def _refs_patch(obj: JSON, refs: list[JSON]) -> list[JSON]:
    md = obj["metadata"]
    ops: list[JSON] = [{"op": "test", "path": "/metadata/uid", "value": md["uid"]},
                       {"op": "test", "path": "/metadata/resourceVersion",
                        "value": md["resourceVersion"]}]
    if refs:
        ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": refs})
    else:
        ops.append({"op": "remove", "path": "/metadata/ownerReferences"})
    return ops


async def adopt(client: Client, owner: JSON, obj: JSON) -> JSON | None:
    """Make ``owner`` the controller of ``obj``; the patched object, or None if
    it changed or vanished meanwhile (the next sync looks again)."""
    refs = [*(obj["metadata"].get("ownerReferences") or []), owner_reference(owner)]
    return await _patch_refs(client, obj, refs)


async def release(client: Client, owner: JSON, obj: JSON) -> JSON | None:
    uid = owner["metadata"]["uid"]
    refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
    return await _patch_refs(client, obj, refs)


async def _patch_refs(client: Client, obj: JSON, refs: list[JSON]) -> JSON | None:
    md = obj["metadata"]
    try:
        return await client.patch(obj.get("apiVersion") or "v1", obj.get("kind") or "Pod",
                                  md["name"], _refs_patch(obj, refs),
                                  namespace=md.get("namespace"), type="json")
    except (NotFoundError, ConflictError, InvalidError):
        return None  # a failed "test" (changed meanwhile) or gone: look again later


__all__ = ["Claim", "adopt", "claim", "release"]
