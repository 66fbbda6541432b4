"""The scores: how good is this feasible node for this pod? Pure functions.

Each raw score is an integer for one node; :func:`normalize` and
:func:`normalize_reverse` map a plugin's raw scores over the feasible nodes
onto 0..100 as upstream's NormalizeScore does, and :data:`WEIGHTS` are the
default profile's plugin weights. Resource scores count the pod's and the
node's non-zero requests (100m CPU, 200 MiB for containers that ask for
none), as kube-scheduler does.
"""

from __future__ import annotations

from kubevisor.controllers.scheduler.nodeinfo import NodeInfo
from kubevisor.controllers.scheduler.podinfo import PodInfo

MAX_SCORE = 100
#: Plugin weights of kube-scheduler's default profile.
WEIGHTS = {"NodeResourcesFit": 1, "NodeResourcesBalancedAllocation": 1, "NodeAffinity": 2,
           "PodTopologySpread": 2, "TaintToleration": 3}


def least_allocated(pod: PodInfo, node: NodeInfo) -> int:
    """NodeResourcesFit/LeastAllocated: the free share of cpu and memory
    after placing the pod, averaged (0..100)."""
    alloc_cpu, alloc_mem = node.allocatable.milli_cpu, node.allocatable.memory
    cpu = node.non_zero_cpu + pod.non_zero_cpu
    mem = node.non_zero_memory + pod.non_zero_memory
    s_cpu = (alloc_cpu - cpu) * MAX_SCORE // alloc_cpu if alloc_cpu and cpu <= alloc_cpu else 0
    s_mem = (alloc_mem - mem) * MAX_SCORE // alloc_mem if alloc_mem and mem <= alloc_mem else 0
    return (s_cpu + s_mem) // 2


def balanced_allocation(pod: PodInfo, node: NodeInfo) -> int:
    """NodeResourcesBalancedAllocation: 100 when cpu and memory are used in
    the same proportion after placing the pod, less the more they differ."""
    alloc_cpu, alloc_mem = node.allocatable.milli_cpu, node.allocatable.memory
    if not alloc_cpu or not alloc_mem:
        return 0
    f_cpu = min((node.requested.milli_cpu + pod.requests.milli_cpu) / alloc_cpu, 1.0)
    f_mem = min((node.requested.memory + pod.requests.memory) / alloc_mem, 1.0)
    return int((1 - abs(f_cpu - f_mem) / 2) * MAX_SCORE)


def node_affinity(pod: PodInfo, node: NodeInfo) -> int:
    """Raw NodeAffinity score: the weights of the preferred terms the node matches."""
    total = 0
    for weight, term in pod.preferred_terms:
        if term.matches(node.labels, node.name):
            total += weight
    return total


def owner_spread(pod: PodInfo, node: NodeInfo) -> int:
    """Raw spreading score: pods of the same controlling owner on the node
    (fewer is better; see :func:`normalize_reverse`)."""
    return node.owners.get(pod.owner_uid, 0) if pod.owner_uid else 0


def intolerable_prefer_no_schedule(pod: PodInfo, node: NodeInfo) -> int:
    """Raw TaintToleration score: PreferNoSchedule taints the pod does not tolerate."""
    count = 0
    for key, value, effect in node.prefer_no_schedule:
        if not any(t.tolerates(key, value, effect) for t in pod.tolerations):
            count += 1
    return count


def normalize(raw: list[int]) -> list[int]:
    """Scale so the best is 100 (all 0 stays 0)."""
    top = max(raw, default=0)
    if top <= 0:
        return [0] * len(raw)
    return [r * MAX_SCORE // top for r in raw]


def normalize_reverse(raw: list[int]) -> list[int]:
    """Scale and flip: the lowest raw value scores 100, the highest 0 (all 0: 100)."""
    top = max(raw, default=0)
    if top <= 0:
        return [MAX_SCORE] * len(raw)
    return [(top - r) * MAX_SCORE // top for r in raw]
