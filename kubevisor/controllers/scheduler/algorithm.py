"""One scheduling decision: filter a sample of nodes, score them, pick one.

As kube-scheduler's ``schedulePod``: nodes are visited round-robin from
where the previous pod stopped; filtering stops once
:func:`feasible_to_find` nodes fit (``percentageOfNodesToScore``, adaptive
by default: 50% minus 1% per 125 nodes, at least 5% and at least 100
nodes); the feasible ones are scored (:mod:`.scores`, default weights) and
the best wins, ties broken at random. When none fits, :class:`Decision`
carries the histogram of reasons over all nodes and :func:`fit_error`
words the FailedScheduling message. Simple pods on plain nodes take an
inlined path (resources only) — the same answer, several times faster.
Pure over the :class:`~.cache.Cache`; called by :mod:`.scheduler`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from kubevisor.controllers.scheduler import scores
from kubevisor.controllers.scheduler.cache import Cache
from kubevisor.controllers.scheduler.filters import (
    TOO_MANY_PODS,
    AffinityState,
    affinity_state,
    insufficient,
    run_filters,
)
from kubevisor.controllers.scheduler.nodeinfo import NodeInfo
from kubevisor.controllers.scheduler.podinfo import PodInfo

MIN_FEASIBLE_NODES = 100
MIN_PERCENTAGE = 5
W = scores.WEIGHTS


def feasible_to_find(total: int, percentage: int = 0) -> int:
    """How many feasible nodes to look for among ``total`` (0: adaptive)."""
    if total < MIN_FEASIBLE_NODES or percentage >= 100:
        return total
    pct = percentage or max(MIN_PERCENTAGE, 50 - total // 125)
    return max(total * pct // 100, MIN_FEASIBLE_NODES)


@dataclass(slots=True)
class Decision:
    node: str | None
    total: int  # nodes in the cluster
    examined: int = 0
    feasible: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> nodes (when none fits)


def fit_error(total: int, reasons: Mapping[str, int]) -> str:
    """``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) were unschedulable.``
    (counts and reasons sorted as strings, as upstream's FitError)."""
    message = f"0/{total} nodes are available:"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    if parts:
        message += " " + ", ".join(parts) + "."
    return message


def schedule(pod: PodInfo, cache: Cache, *, start: int = 0, percentage: int = 0,
             rng: random.Random | None = None) -> tuple[Decision, int]:
    """The decision for ``pod`` and where the next pod's sampling starts."""
    nodes = cache.order
    total = len(nodes)
    decision = Decision(None, total)
    if total == 0:
        return decision, 0
    rng = rng or random.Random()
    want = feasible_to_find(total, percentage)
    state = affinity_state(pod, cache) if (pod.affinity or pod.anti_affinity
                                           or cache.anti_affinity_pods) else None
    start %= total
    if pod.simple and state is None and not pod.requests.scalars and not pod.owner_uid:
        chosen, found, examined = _fast_path(pod, nodes, start, want, decision.reasons, rng)
        if chosen is not None:
            decision.node, decision.examined, decision.feasible = chosen.name, examined, found
            return decision, (start + examined) % total
        # Nothing fit on plain nodes: the general path words the reasons.
        decision.reasons = {}
    if pod.simple and state is None and not pod.requests.scalars:
        feasible, examined = _filter_simple(pod, nodes, start, want, decision.reasons)
    else:
        feasible, examined = _filter(pod, nodes, start, want, state, decision.reasons)
    decision.examined, decision.feasible = examined, len(feasible)
    next_start = (start + examined) % total
    if not feasible:
        return decision, next_start
    decision.reasons = {}
    decision.node = select(pod, feasible, rng)
    return decision, next_start


def _filter(pod: PodInfo, nodes: list[NodeInfo], start: int, want: int,
            state: AffinityState | None, histogram: dict[str, int]) -> tuple[list[NodeInfo], int]:
    total = len(nodes)
    feasible: list[NodeInfo] = []
    examined = 0
    for offset in range(total):
        node = nodes[(start + offset) % total]
        examined += 1
        reasons = run_filters(pod, node, state)
        if reasons is None:
            feasible.append(node)
            if len(feasible) >= want:
                break
        else:
            for reason in reasons:
                histogram[reason] = histogram.get(reason, 0) + 1
    return feasible, examined


def _filter_simple(pod: PodInfo, nodes: list[NodeInfo], start: int, want: int,
                   histogram: dict[str, int]) -> tuple[list[NodeInfo], int]:
    """:func:`_filter` for a simple pod: on plain nodes only resources matter."""
    total = len(nodes)
    feasible: list[NodeInfo] = []
    add = feasible.append
    cpu, mem, eph = pod.requests.milli_cpu, pod.requests.memory, pod.requests.ephemeral
    examined = 0
    i = start
    for _ in range(total):
        node = nodes[i]
        i += 1
        if i == total:
            i = 0
        examined += 1
        if node.plain:
            have, used = node.allocatable, node.requested
            if (len(node.pods) < node.max_pods
                    and (not cpu or cpu <= have.milli_cpu - used.milli_cpu)
                    and (not mem or mem <= have.memory - used.memory)
                    and (not eph or eph <= have.ephemeral - used.ephemeral)):
                add(node)
                if len(feasible) >= want:
                    break
                continue
            reasons: tuple[str, ...] | None = _fit_reasons(pod, node)
        else:
            reasons = run_filters(pod, node, None)
            if reasons is None:
                add(node)
                if len(feasible) >= want:
                    break
                continue
        for reason in reasons or ():
            histogram[reason] = histogram.get(reason, 0) + 1
    return feasible, examined


_SIGNATURES: dict[tuple[int, ...], tuple[int, ...]] = {}


def _signature(*values: int) -> tuple[int, ...]:
    """One shared tuple per request signature, so the memo is checked with ``is``."""
    if len(_SIGNATURES) > 4096:
        _SIGNATURES.clear()
    return _SIGNATURES.setdefault(values, values)


def _fast_path(pod: PodInfo, nodes: list[NodeInfo], start: int, want: int,
               histogram: dict[str, int], rng: random.Random) -> tuple[NodeInfo | None, int, int]:
    """Filter and score in one pass, for a simple pod without an owner: on
    plain nodes only resources decide, and only the two resource scores
    differ between nodes (spreading, node affinity and taint scores are the
    same for all). Nodes with taints or a cordon go through the filters; if
    they pass they are scored like the others. Returns (best, feasible, examined)."""
    total = len(nodes)
    cpu, mem, eph = pod.requests.milli_cpu, pod.requests.memory, pod.requests.ephemeral
    nz_cpu, nz_mem = pod.non_zero_cpu, pod.non_zero_memory
    best: NodeInfo | None = None
    best_score, ties, found, examined = -1, 0, 0, 0
    i = start
    key = _signature(cpu, mem, eph, nz_cpu, nz_mem)
    for _ in range(total):
        node = nodes[i]
        i += 1
        if i == total:
            i = 0
        examined += 1
        if node.score_key is key:  # a plain node unchanged since a pod like this one
            score = node.score_value
            if score < 0:
                for reason in _fit_reasons(pod, node):
                    histogram[reason] = histogram.get(reason, 0) + 1
                continue
        else:
            if node.plain:
                if not (node.npods < node.max_pods
                        and (not cpu or cpu <= node.a_cpu - node.r_cpu)
                        and (not mem or mem <= node.a_mem - node.r_mem)
                        and (not eph or eph <= node.a_eph - node.r_eph)):
                    node.score_key, node.score_value = key, -1
                    for reason in _fit_reasons(pod, node):
                        histogram[reason] = histogram.get(reason, 0) + 1
                    continue
            else:
                reasons = run_filters(pod, node, None)
                if reasons is not None:
                    for reason in reasons:
                        histogram[reason] = histogram.get(reason, 0) + 1
                    continue
            a_cpu, a_mem = node.a_cpu, node.a_mem
            if a_cpu and a_mem:
                c, m = node.non_zero_cpu + nz_cpu, node.non_zero_memory + nz_mem
                least = (((a_cpu - c) * 100 // a_cpu if c <= a_cpu else 0)
                         + ((a_mem - m) * 100 // a_mem if m <= a_mem else 0)) // 2
                f_cpu = (node.r_cpu + cpu) / a_cpu
                f_mem = (node.r_mem + mem) / a_mem
                if f_cpu > 1:
                    f_cpu = 1.0
                if f_mem > 1:
                    f_mem = 1.0
                score = least + int((1 - abs(f_cpu - f_mem) / 2) * 100)
            else:
                score = 0
            if node.plain:
                node.score_key, node.score_value = key, score
        found += 1
        if score > best_score:
            best, best_score, ties = node, score, 1
        elif score == best_score:
            ties += 1
            if rng.random() * ties < 1.0:  # keeps each of the tied nodes with 1/ties
                best = node
        if found >= want:
            break
    return best, found, examined


def _fit_reasons(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
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
    return tuple(reasons)


def score_nodes(pod: PodInfo, feasible: list[NodeInfo]) -> list[int]:
    """The weighted sum of every score for each feasible node."""
    totals = [W["NodeResourcesFit"] * scores.least_allocated(pod, n)
              + W["NodeResourcesBalancedAllocation"] * scores.balanced_allocation(pod, n)
              for n in feasible]
    extra: list[tuple[int, list[int]]] = []
    if pod.owner_uid:
        extra.append((W["PodTopologySpread"], scores.normalize_reverse(
            [scores.owner_spread(pod, n) for n in feasible])))
    else:
        extra.append((W["PodTopologySpread"], [scores.MAX_SCORE] * len(feasible)))
    if pod.preferred_terms:
        extra.append((W["NodeAffinity"], scores.normalize(
            [scores.node_affinity(pod, n) for n in feasible])))
    if any(n.prefer_no_schedule for n in feasible):
        extra.append((W["TaintToleration"], scores.normalize_reverse(
            [scores.intolerable_prefer_no_schedule(pod, n) for n in feasible])))
    else:
        extra.append((W["TaintToleration"], [scores.MAX_SCORE] * len(feasible)))
    for weight, values in extra:
        for i, v in enumerate(values):
            totals[i] += weight * v
    return totals


def select(pod: PodInfo, feasible: list[NodeInfo], rng: random.Random) -> str:
    """The best-scoring node, a random one among equals (reservoir sampling)."""
    if len(feasible) == 1:
        return feasible[0].name
    totals = score_nodes(pod, feasible)
    best, chosen, ties = -1, feasible[0].name, 0
    for node, total in zip(feasible, totals, strict=True):
        if total > best:
            best, chosen, ties = total, node.name, 1
        elif total == best:
            ties += 1
            if rng.random() * ties < 1.0:  # keeps each of the tied nodes with 1/ties
                chosen = node.name
    return chosen
