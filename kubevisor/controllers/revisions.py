"""Revisions of a pod template: the ``controller-revision-hash`` and
ControllerRevisions (apps/v1), pure.

A StatefulSet or DaemonSet names each version of its pod template by a
hash of the template; its pods carry it in the ``controller-revision-hash``
label, and a ControllerRevision ``<owner>-<hash>`` (owned by the workload)
keeps the template so that pods of an older revision can be re-created
(a StatefulSet partition) and ``kubectl rollout history/undo`` can see
them. Called by statefulset.py and daemonset.py.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from kubevisor.api.meta import owner_reference

JSON = dict[str, Any]
HASH_LABEL = "controller-revision-hash"
# The alphabet of kube's rand.SafeEncodeString: no vowels, no look-alikes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: JSON, *, collision_count: int = 0) -> str:
    """A short, label-safe hash of a pod template (stable across key order)."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(collision_count).encode()
    n = int.from_bytes(hashlib.sha256(data).digest()[:8], "big")
    out = []
    for _ in range(10):
        n, r = divmod(n, len(_SAFE))
        out.append(_SAFE[r])
    return "".join(out)


def revision_data(template: JSON) -> JSON:
    """What a ControllerRevision stores: the patch that restores the template."""
    tpl = copy.deepcopy(template)
    tpl["$patch"] = "replace"
    return {"spec": {"template": tpl}}


def template_of(revision: JSON) -> JSON | None:
    tpl = ((revision.get("data") or {}).get("spec") or {}).get("template")
    if not isinstance(tpl, dict):
        return None
    tpl = copy.deepcopy(tpl)
    tpl.pop("$patch", None)
    return tpl


def revision_name(owner: JSON, template: JSON) -> str:
    return f"{owner['metadata']['name']}-{template_hash(template)}"


def build_revision(owner: JSON, template: JSON, number: int) -> JSON:
    """A ControllerRevision for ``owner``'s ``template`` with revision ``number``."""
    md = owner["metadata"]
    selector_labels = dict(((owner.get("spec") or {}).get("selector") or {})
                           .get("matchLabels") or {})
    return {
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": revision_name(owner, template), "namespace": md["namespace"],
                     "labels": {**selector_labels, HASH_LABEL: template_hash(template)},
                     "ownerReferences": [owner_reference(owner)]},
        "data": revision_data(template),
        "revision": number,
    }


def next_number(revisions: Iterable[JSON]) -> int:
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


def stale_revisions(revisions: Iterable[JSON], *, keep: int, in_use: set[str]) -> list[str]:
    """Names of revisions beyond the history limit ``keep`` (oldest first),
    never one that is ``in_use``."""
    old = sorted((r for r in revisions if r["metadata"]["name"] not in in_use),
                 key=lambda r: int(r.get("revision") or 0))
    excess = len(old) - max(keep, 0)
    return [r["metadata"]["name"] for r in old[:excess]] if excess > 0 else []
