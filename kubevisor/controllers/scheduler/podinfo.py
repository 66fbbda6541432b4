"""A pod as the scheduler sees it: parsed once from the Pod object.

:func:`pod_info` turns a Pod (JSON) into a :class:`PodInfo` holding what
every filter and score needs, precompiled: requests as integers (with the
RuntimeClass's ``overhead.podFixed`` when the pod has no ``spec.overhead``,
and the RuntimeClass's scheduling nodeSelector and tolerations merged in,
as kube's RuntimeClass admission does), host ports, tolerations, the node
selector and node affinity as requirement tuples, pod (anti-)affinity
terms, and the controlling owner's uid (for spreading). ``simple`` says
that only resources, taints and cordons can stop the pod, which lets the
algorithm take its fast path. Pure; called by the cache and the
scheduler's informer handlers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubevisor.api.selectors import (
    LabelSelector,
    Requirement,
    SelectorError,
    label_selector_from_spec,
)
from kubevisor.controllers.scheduler.resources import Resources, non_zero_requests, pod_requests

JSON = dict[str, Any]

DEFAULT_SCHEDULER = "default-scheduler"
_NODE_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!",
             "Gt": "gt", "Lt": "lt"}


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, key: str, value: str, effect: str) -> bool:
        """upstream's ``Toleration.ToleratesTaint``."""
        if self.effect and self.effect != effect:
            return False
        if self.key and self.key != key:
            return False
        if self.operator == "Exists":
            return True
        return self.operator in ("Equal", "") and self.value == value


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """Requirements on labels and on fields (only ``metadata.name``), ANDed."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()
    valid: bool = True  # a term with a malformed requirement matches nothing

    def matches(self, node_labels: Mapping[str, str], node_name: str) -> bool:
        if not self.valid or (not self.labels and not self.fields):
            return False  # an empty term matches no objects
        for req in self.labels:
            if not req.matches(node_labels):
                return False
        if self.fields:
            values = {"metadata.name": node_name}
            for req in self.fields:
                if not req.matches(values):
                    return False
        return True


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A PodAffinityTerm: pods matching ``selector`` in ``namespaces`` (None:
    decided by ``namespace_selector`` over namespace labels) within the same
    ``topology_key`` domain."""

    selector: LabelSelector
    topology_key: str
    namespaces: frozenset[str] | None
    namespace_selector: LabelSelector | None = None
    weight: int = 0

    def matches_pod(self, pod: PodInfo, ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if self.namespaces is not None and pod.namespace not in self.namespaces:
            if self.namespace_selector is None:
                return False
            if not self.namespace_selector.matches(ns_labels.get(pod.namespace) or {}):
                return False
        elif self.namespaces is None and self.namespace_selector is not None:
            if not self.namespace_selector.matches(ns_labels.get(pod.namespace) or {}):
                return False
        return self.selector.matches(pod.labels)


@dataclass(frozen=True, slots=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    scheduler_name: str
    node_name: str
    priority: int
    requests: Resources
    non_zero_cpu: int
    non_zero_memory: int
    host_ports: tuple[tuple[str, str, int], ...]
    tolerations: tuple[Toleration, ...]
    node_selector: Mapping[str, str]
    required_terms: tuple[NodeSelectorTerm, ...] | None  # None: no required node affinity
    preferred_terms: tuple[tuple[int, NodeSelectorTerm], ...]
    affinity: tuple[AffinityTerm, ...]
    anti_affinity: tuple[AffinityTerm, ...]
    owner_uid: str
    deleting: bool
    gated: bool
    simple: bool
    resource_version: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)



def _node_requirement(expr: Mapping[str, Any]) -> Requirement:
    op = _NODE_OPS.get(str(expr.get("operator") or ""))
    if op is None:
        raise SelectorError(f"bad operator {expr.get('operator')!r}")
    values = tuple(str(v) for v in expr.get("values") or ())
    if op in ("gt", "lt"):
        if len(values) != 1:
            raise SelectorError("Gt and Lt take one value")
        int(values[0])
    return Requirement(str(expr.get("key") or ""), op, values)


def node_selector_term(term: Mapping[str, Any] | None) -> NodeSelectorTerm:
    term = term or {}
    try:
        labels = tuple(_node_requirement(e) for e in term.get("matchExpressions") or ())
        fields = tuple(_node_requirement(e) for e in term.get("matchFields") or ())
    except (SelectorError, ValueError):
        return NodeSelectorTerm(valid=False)
    if any(f.key != "metadata.name" or f.op not in ("in", "notin") for f in fields):
        return NodeSelectorTerm(valid=False)
    return NodeSelectorTerm(labels, fields)


def _affinity_terms(terms: Any, namespace: str, *, weighted: bool = False) -> tuple[AffinityTerm, ...]:
    out = []
    for raw in terms or ():
        weight = 0
        if weighted:
            weight = int(raw.get("weight") or 0)
            raw = raw.get("podAffinityTerm") or {}
        try:
            selector = label_selector_from_spec(raw.get("labelSelector"))
            ns_sel_spec = raw.get("namespaceSelector")
            ns_selector = None if ns_sel_spec is None else label_selector_from_spec(ns_sel_spec)
        except SelectorError:
            selector, ns_selector = LabelSelector(nothing=True), None
        names = raw.get("namespaces") or []
        namespaces: frozenset[str] | None
        if names:
            namespaces = frozenset(names)
        elif ns_selector is not None:
            namespaces = None  # the selector decides ({} selects every namespace)
        else:
            namespaces = frozenset((namespace,))
        out.append(AffinityTerm(selector, str(raw.get("topologyKey") or ""), namespaces,
                                ns_selector, weight))
    return tuple(out)


def _host_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    ports = []
    for c in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]:
        for p in c.get("ports") or ():
            port = p.get("hostPort") or 0
            if port:
                ports.append((str(p.get("hostIP") or "0.0.0.0"), str(p.get("protocol") or "TCP"),
                              int(port)))
    return tuple(ports)


def _owner_uid(meta: Mapping[str, Any]) -> str:
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def pod_info(pod: Mapping[str, Any], runtime_class: Mapping[str, Any] | None = None) -> PodInfo:
    """The scheduler's view of ``pod``; ``runtime_class`` is the RuntimeClass
    its ``spec.runtimeClassName`` names, when known."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace = str(meta.get("namespace") or "")
    overhead = None
    node_selector = dict(spec.get("nodeSelector") or {})
    raw_tolerations = list(spec.get("tolerations") or ())
    if runtime_class is not None:
        if not spec.get("overhead"):
            overhead = ((runtime_class.get("overhead") or {}).get("podFixed")) or None
        scheduling = runtime_class.get("scheduling") or {}
        node_selector.update(scheduling.get("nodeSelector") or {})
        raw_tolerations.extend(scheduling.get("tolerations") or ())
    requests = pod_requests(spec, overhead)
    nz_cpu, nz_mem = non_zero_requests(spec, overhead)
    tolerations = tuple(Toleration(str(t.get("key") or ""), str(t.get("operator") or "Equal"),
                                   str(t.get("value") or ""), str(t.get("effect") or ""))
                        for t in raw_tolerations)
    affinity = spec.get("affinity") or {}
    node_aff = affinity.get("nodeAffinity") or {}
    required_raw = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    required = None
    if required_raw is not None:
        required = tuple(node_selector_term(t) for t in required_raw.get("nodeSelectorTerms") or ())
    preferred = tuple((int(p.get("weight") or 0), node_selector_term(p.get("preference")))
                      for p in node_aff.get("preferredDuringSchedulingIgnoredDuringExecution") or ())
    pod_aff = affinity.get("podAffinity") or {}
    pod_anti = affinity.get("podAntiAffinity") or {}
    aff_terms = _affinity_terms(pod_aff.get("requiredDuringSchedulingIgnoredDuringExecution"),
                                namespace)
    anti_terms = _affinity_terms(pod_anti.get("requiredDuringSchedulingIgnoredDuringExecution"),
                                 namespace)
    host_ports = _host_ports(spec)
    simple = not (node_selector or required is not None or aff_terms or anti_terms or host_ports
                  or preferred)
    return PodInfo(
        namespace=namespace, name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
        labels=meta.get("labels") or {},
        scheduler_name=str(spec.get("schedulerName") or DEFAULT_SCHEDULER),
        node_name=str(spec.get("nodeName") or ""), priority=int(spec.get("priority") or 0),
        requests=requests, non_zero_cpu=nz_cpu, non_zero_memory=nz_mem, host_ports=host_ports,
        tolerations=tolerations, node_selector=node_selector, required_terms=required,
        preferred_terms=preferred, affinity=aff_terms, anti_affinity=anti_terms,
        owner_uid=_owner_uid(meta), deleting=bool(meta.get("deletionTimestamp")),
        gated=bool(spec.get("schedulingGates")), simple=simple,
        resource_version=str(meta.get("resourceVersion") or ""),
    )
