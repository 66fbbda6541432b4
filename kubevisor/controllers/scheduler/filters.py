"""The filters: can this pod go to this node? Pure functions.

Each filter takes the pod, the node (and, for inter-pod affinity, the state
computed once per pod by :func:`affinity_state`) and returns ``None`` when
the node passes or the reasons it fails, worded exactly as kube-scheduler's
plugins word them (they end up, counted, in the FailedScheduling message).
:data:`FILTERS` lists them in the default profile's order; the algorithm
stops at the first that fails, as upstream's framework does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kubevisor.controllers.scheduler.cache import Cache
from kubevisor.controllers.scheduler.nodeinfo import NodeInfo
from kubevisor.controllers.scheduler.podinfo import AffinityTerm, PodInfo, Toleration

Reasons = tuple[str, ...] | None

UNSCHEDULABLE = "node(s) were unschedulable"
NODE_NAME = "node(s) didn't match the requested node name"
NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
NODE_PORTS = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
POD_AFFINITY = "node(s) didn't match pod affinity rules"
POD_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def untolerated_taint(key: str, value: str) -> str:
    return f"node(s) had untolerated taint {{{key}: {value}}}"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


def _tolerated(tolerations: tuple[Toleration, ...], key: str, value: str, effect: str) -> bool:
    for t in tolerations:
        if t.tolerates(key, value, effect):
            return True
    return False


# -- node-only filters ---------------------------------------------------------


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> Reasons:
    """A cordoned node, unless the pod tolerates its unschedulable taint."""
    if node.unschedulable and not _tolerated(pod.tolerations, UNSCHEDULABLE_TAINT, "",
                                             "NoSchedule"):
        return (UNSCHEDULABLE,)
    return None


def node_name(pod: PodInfo, node: NodeInfo) -> Reasons:
    if pod.node_name and pod.node_name != node.name:
        return (NODE_NAME,)
    return None


def taint_toleration(pod: PodInfo, node: NodeInfo) -> Reasons:
    """The first NoSchedule/NoExecute taint the pod does not tolerate."""
    for key, value, effect in node.taints:
        if not _tolerated(pod.tolerations, key, value, effect):
            return (untolerated_taint(key, value),)
    return None


def matches_node_selector(pod: PodInfo, node: NodeInfo) -> bool:
    labels = node.labels
    for key, value in pod.node_selector.items():
        if labels.get(key) != value:
            return False
    if pod.required_terms is not None:
        return any(term.matches(labels, node.name) for term in pod.required_terms)
    return True


def node_affinity(pod: PodInfo, node: NodeInfo) -> Reasons:
    """nodeSelector and required node affinity (terms ORed, requirements ANDed)."""
    if not pod.node_selector and pod.required_terms is None:
        return None
    return None if matches_node_selector(pod, node) else (NODE_AFFINITY,)


def node_ports(pod: PodInfo, node: NodeInfo) -> Reasons:
    """A host port (protocol, port) taken on the same or the wildcard address."""
    if not pod.host_ports or not node.ports:
        return None
    for ip, protocol, port in pod.host_ports:
        for used_ip, used_protocol, used_port in node.ports:
            if used_port == port and used_protocol == protocol and (
                    ip == used_ip or ip == "0.0.0.0" or used_ip == "0.0.0.0"):
                return (NODE_PORTS,)
    return None


def resources_fit(pod: PodInfo, node: NodeInfo) -> Reasons:
    """Requests against allocatable minus what the node's pods request; every
    short resource is a reason of its own."""
    reasons = []
    if len(node.pods) + 1 > node.max_pods:
        reasons.append(TOO_MANY_PODS)
    want, have, used = pod.requests, node.allocatable, node.requested
    if want.milli_cpu and want.milli_cpu > have.milli_cpu - used.milli_cpu:
        reasons.append(insufficient("cpu"))
    if want.memory and want.memory > have.memory - used.memory:
        reasons.append(insufficient("memory"))
    if want.ephemeral and want.ephemeral > have.ephemeral - used.ephemeral:
        reasons.append(insufficient("ephemeral-storage"))
    for name, value in want.scalars.items():
        if value and value > have.scalars.get(name, 0) - used.scalars.get(name, 0):
            reasons.append(insufficient(name))
    return tuple(reasons) if reasons else None


# -- inter-pod affinity ----------------------------------------------------------

Pair = tuple[str, str]


@dataclass(slots=True)
class AffinityState:
    """What :func:`inter_pod_affinity` needs, computed once per pod (upstream's PreFilter)."""

    existing_anti: dict[Pair, int] = field(default_factory=dict)
    affinity: dict[Pair, int] = field(default_factory=dict)
    anti_affinity: dict[Pair, int] = field(default_factory=dict)
    matches_own_affinity: bool = False


def _term_matches(term: AffinityTerm, pod: PodInfo, ns_labels: Mapping[str, Mapping[str, str]]) -> bool:
    return term.matches_pod(pod, ns_labels)


def affinity_state(pod: PodInfo, cache: Cache) -> AffinityState:
    state = AffinityState()
    ns_labels = cache.namespace_labels
    if cache.anti_affinity_pods:
        for node in cache.nodes.values():
            if not node.anti_affinity_pods:
                continue
            for existing in node.anti_affinity_pods.values():
                for term in existing.anti_affinity:
                    value = node.labels.get(term.topology_key)
                    if value is not None and _term_matches(term, pod, ns_labels):
                        pair = (term.topology_key, value)
                        state.existing_anti[pair] = state.existing_anti.get(pair, 0) + 1
    if pod.affinity or pod.anti_affinity:
        for node in cache.nodes.values():
            if not node.pods:
                continue
            labels = node.labels
            for existing in node.pods.values():
                if existing.uid == pod.uid:
                    continue
                if pod.affinity and all(_term_matches(t, existing, ns_labels)
                                        for t in pod.affinity):
                    for term in pod.affinity:
                        value = labels.get(term.topology_key)
                        if value is not None:
                            pair = (term.topology_key, value)
                            state.affinity[pair] = state.affinity.get(pair, 0) + 1
                for term in pod.anti_affinity:
                    value = labels.get(term.topology_key)
                    if value is not None and _term_matches(term, existing, ns_labels):
                        pair = (term.topology_key, value)
                        state.anti_affinity[pair] = state.anti_affinity.get(pair, 0) + 1
        state.matches_own_affinity = bool(pod.affinity) and all(
            _term_matches(t, pod, ns_labels) for t in pod.affinity)
    return state


def inter_pod_affinity(pod: PodInfo, node: NodeInfo, state: AffinityState) -> Reasons:
    """Existing pods' anti-affinity, then the pod's affinity, then its anti-affinity."""
    if state.existing_anti:
        for pair in node.labels.items():
            if state.existing_anti.get(pair, 0) > 0:
                return (EXISTING_ANTI_AFFINITY,)
    if pod.affinity:
        found = True
        for term in pod.affinity:
            value = node.labels.get(term.topology_key)
            if value is None:
                return (POD_AFFINITY,)
            if state.affinity.get((term.topology_key, value), 0) <= 0:
                found = False
        # The first pod of a group that matches its own terms may go anywhere.
        if not found and not (not state.affinity and state.matches_own_affinity):
            return (POD_AFFINITY,)
    for term in pod.anti_affinity:
        value = node.labels.get(term.topology_key)
        if value is not None and state.anti_affinity.get((term.topology_key, value), 0) > 0:
            return (POD_ANTI_AFFINITY,)
    return None


#: The node-only filters in the order of kube-scheduler's default profile
#: (inter-pod affinity, which needs per-pod state, runs after them).
FILTERS: tuple[Callable[[PodInfo, NodeInfo], Reasons], ...] = (
    node_unschedulable, node_name, taint_toleration, node_affinity, node_ports, resources_fit,
)


def run_filters(pod: PodInfo, node: NodeInfo, state: AffinityState | None) -> Reasons:
    """The reasons of the first filter that fails, or None when the node fits."""
    for check in FILTERS:
        reasons = check(pod, node)
        if reasons is not None:
            return reasons
    if state is not None:
        return inter_pod_affinity(pod, node, state)
    return None
