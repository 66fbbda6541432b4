"""Pod templates of ReplicaSets and Deployments, pure.

What kube-controller-manager derives from a ``spec.template``: the pod a
ReplicaSet creates from it (:func:`pod_from_template`: labels, annotations
and finalizers of the template, ``generateName: <owner>-``, a controller
owner reference), the ``pod-template-hash`` a Deployment names its
ReplicaSets by (:func:`template_hash`: FNV-32a over the template and the
collision count, the decimal digits rendered through kube's "safe
encoding" alphabet, so names look like ``web-5d9c8b7f6c``), and template
equality that ignores that label (:func:`equal_ignore_hash`). The hash
hashes a canonical JSON form of the template, not Go's struct dump, so
the value differs from kube's for the same template; its shape does not.
Called by replicaset.py and deployment.py.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from kubevisor.api.meta import owner_reference

JSON = dict[str, Any]
HASH_LABEL = "pod-template-hash"
#: kube's rand.SafeEncodeString alphabet: no vowels, no look-alike digits.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
#: kube's cap on a generateName prefix (63 minus the 5-character random suffix).
_MAX_PREFIX = 58


def fnv32a(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """kube's ``rand.SafeEncodeString``: each byte mapped into the safe alphabet."""
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in text.encode())


def template_hash(template: JSON, *, collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of ``template`` (1-10 characters, usually 9-10)."""
    data = orjson.dumps(_normalized(template), option=orjson.OPT_SORT_KEYS)
    if collision_count is not None:
        data += (collision_count & 0xFFFFFFFF).to_bytes(8, "little")
    return safe_encode(str(fnv32a(data)))


def _normalized(template: JSON) -> JSON:
    """``template`` without the hash label, empty label maps or null timestamps
    (``kubectl create`` sends ``creationTimestamp: null`` in templates)."""
    tpl = copy.deepcopy(template) if template else {}
    md = tpl.get("metadata")
    if isinstance(md, dict):
        labels = md.get("labels")
        if isinstance(labels, dict):
            labels.pop(HASH_LABEL, None)
            if not labels:
                md.pop("labels")
        if md.get("creationTimestamp") is None:
            md.pop("creationTimestamp", None)
        if not md:
            tpl.pop("metadata")
    return tpl


def equal_ignore_hash(a: JSON | None, b: JSON | None) -> bool:
    """The two templates are the same but for the ``pod-template-hash`` label."""
    return _normalized(a or {}) == _normalized(b or {})


def with_hash_label(template: JSON, hash_: str) -> JSON:
    """A copy of ``template`` whose labels carry ``pod-template-hash``."""
    tpl = copy.deepcopy(template)
    md = tpl.setdefault("metadata", {})
    md["labels"] = {**(md.get("labels") or {}), HASH_LABEL: hash_}
    return tpl


def selector_with_hash(selector: JSON | None, hash_: str) -> JSON:
    """A copy of a LabelSelector that also requires ``pod-template-hash``."""
    sel = copy.deepcopy(selector or {})
    sel["matchLabels"] = {**(sel.get("matchLabels") or {}), HASH_LABEL: hash_}
    return sel


def without_hash_label(template: JSON) -> JSON:
    tpl = copy.deepcopy(template)
    labels = (tpl.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return tpl


def pod_from_template(owner: JSON, template: JSON) -> JSON:
    """The Pod ``owner`` (a ReplicaSet) creates from its template: the apiserver
    adds the random name suffix to ``generateName``."""
    md = template.get("metadata") or {}
    meta: JSON = {
        "generateName": f"{owner['metadata']['name'][:_MAX_PREFIX - 1]}-",
        "namespace": owner["metadata"].get("namespace"),
        "ownerReferences": [owner_reference(owner)],
    }
    for key in ("labels", "annotations", "finalizers"):
        if md.get(key):
            meta[key] = copy.deepcopy(md[key])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


__all__ = [
    "HASH_LABEL",
    "SAFE_ALPHABET",
    "equal_ignore_hash",
    "fnv32a",
    "pod_from_template",
    "safe_encode",
    "selector_with_hash",
    "template_hash",
    "with_hash_label",
    "without_hash_label",
]
