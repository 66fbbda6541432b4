"""Taints, tolerations and node selection over plain Node and Pod dicts, pure.

Whether a toleration tolerates a taint, which NoExecute taints a pod does
not tolerate and for how long it tolerates the others, whether a node
matches a pod's ``nodeSelector`` and required node affinity. Called by
the DaemonSet controller (which nodes get a daemon pod) and the node
lifecycle controller (when pods on a tainted node are evicted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

JSON = dict[str, Any]


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """kube's ``Toleration.ToleratesTaint``."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def untolerated(tolerations: Iterable[Mapping[str, Any]], taints: Iterable[Mapping[str, Any]],
                effects: tuple[str, ...]) -> list[Mapping[str, Any]]:
    """The taints with one of ``effects`` that no toleration tolerates."""
    tols = list(tolerations)
    return [t for t in taints if t.get("effect") in effects and not tolerated(tols, t)]


def toleration_seconds(tolerations: Iterable[Mapping[str, Any]],
                       taints: Iterable[Mapping[str, Any]]) -> float | None:
    """How long a pod may stay on a node with these NoExecute ``taints``:
    0 if one is not tolerated, else the smallest ``tolerationSeconds`` of
    the tolerations that match (None: forever)."""
    tols = list(tolerations)
    least: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        matching = [t for t in tols if tolerates(t, taint)]
        if not matching:
            return 0.0
        for tol in matching:
            seconds = tol.get("tolerationSeconds")
            if seconds is None:
                continue
            value = max(float(seconds), 0.0)
            least = value if least is None else min(least, value)
    return least


def _requirement(labels: Mapping[str, str], expr: Mapping[str, Any]) -> bool:
    key, op = expr.get("key", ""), expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or ()]
    have = labels.get(key)
    if op == "In":
        return have is not None and have in values
    if op == "NotIn":
        return have is None or have not in values
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and len(values) == 1:
        try:
            a, b = int(have), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """One NodeSelectorTerm: all its expressions and fields (an empty term matches nothing)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    md = node.get("metadata") or {}
    labels = md.get("labels") or {}
    if not all(_requirement(labels, e) for e in exprs):
        return False
    return all(f.get("key") == "metadata.name" and _requirement({"k": md.get("name", "")},
                                                                 {**f, "key": "k"})
               for f in fields)


def matches_node(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """The pod's ``nodeSelector`` and required node affinity admit ``node``."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or ())


def node_taints(node: Mapping[str, Any]) -> list[JSON]:
    return list((node.get("spec") or {}).get("taints") or [])
