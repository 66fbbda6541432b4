"""A node as the scheduler sees it, with the pods bound or assumed to it.

:class:`NodeInfo` is built from a Node object (:meth:`NodeInfo.set_node`:
labels, taints, cordon, allocatable) and keeps running totals of what its
pods request (:meth:`add_pod`/:meth:`remove_pod`): requested resources,
the non-zero requests the scores use, the pod count, host ports in use,
pods per controlling owner, and the pods carrying required anti-affinity.
Totals change in place, so the cache never recomputes a node from its
pods. ``plain`` marks a schedulable node without NoSchedule/NoExecute
taints, where only resources can stop a simple pod. Owned by
:mod:`.cache`; read by the filters and scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubevisor.controllers.scheduler.podinfo import PodInfo
from kubevisor.controllers.scheduler.resources import PODS, Resources, amount

JSON = dict[str, Any]
HARD_EFFECTS = ("NoSchedule", "NoExecute")


class NodeInfo:
    __slots__ = (
        "a_cpu", "a_eph", "a_mem", "allocatable", "anti_affinity_pods", "known", "labels",
        "max_pods", "name", "non_zero_cpu", "non_zero_memory", "npods", "owners", "plain",
        "pods", "ports", "prefer_no_schedule", "r_cpu", "r_eph", "r_mem", "requested", "score_key",
        "score_value", "taints", "unschedulable",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.known = False  # False while only pods name it (the Node not seen yet)
        self.labels: Mapping[str, str] = {}
        self.taints: tuple[tuple[str, str, str], ...] = ()  # hard ones: (key, value, effect)
        self.prefer_no_schedule: tuple[tuple[str, str, str], ...] = ()
        self.unschedulable = False
        self.allocatable = Resources()
        self.max_pods = 0
        self.plain = False
        self.requested = Resources()
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.pods: dict[str, PodInfo] = {}
        self.ports: dict[tuple[str, str, int], int] = {}
        self.owners: dict[str, int] = {}
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        # Flat copies of the hot numbers (allocatable, requested, pod count)
        # for the algorithm's inner loop.
        self.a_cpu = self.a_mem = self.a_eph = 0
        self.r_cpu = self.r_mem = self.r_eph = 0
        self.npods = 0
        # The algorithm's memo for plain nodes: the score (-1: does not fit)
        # for the request signature ``score_key``; any change clears it.
        self.score_key: object = None
        self.score_value = -1

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, pods={len(self.pods)})"

    def set_node(self, node: Mapping[str, Any]) -> None:
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.known = True
        self.labels = meta.get("labels") or {}
        taints = [(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
                  for t in spec.get("taints") or ()]
        self.taints = tuple(t for t in taints if t[2] in HARD_EFFECTS)
        self.prefer_no_schedule = tuple(t for t in taints if t[2] == "PreferNoSchedule")
        self.unschedulable = bool(spec.get("unschedulable"))
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable = Resources.from_list(alloc)
        self.max_pods = amount(PODS, alloc.get(PODS, 0))
        self.a_cpu, self.a_mem = self.allocatable.milli_cpu, self.allocatable.memory
        self.a_eph = self.allocatable.ephemeral
        self.plain = not self.taints and not self.unschedulable
        self.score_key = None

    def add_pod(self, pod: PodInfo) -> None:
        self._account(pod, 1)
        self.pods[pod.uid] = pod

    def remove_pod(self, pod: PodInfo) -> None:
        if self.pods.pop(pod.uid, None) is None:
            return
        self._account(pod, -1)

    def _account(self, pod: PodInfo, sign: int) -> None:
        self.requested.add(pod.requests, sign)
        self.r_cpu, self.r_mem = self.requested.milli_cpu, self.requested.memory
        self.r_eph = self.requested.ephemeral
        self.npods += sign
        self.score_key = None
        self.non_zero_cpu += sign * pod.non_zero_cpu
        self.non_zero_memory += sign * pod.non_zero_memory
        for port in pod.host_ports:
            left = self.ports.get(port, 0) + sign
            if left > 0:
                self.ports[port] = left
            else:
                self.ports.pop(port, None)
        if pod.owner_uid:
            left = self.owners.get(pod.owner_uid, 0) + sign
            if left > 0:
                self.owners[pod.owner_uid] = left
            else:
                self.owners.pop(pod.owner_uid, None)
        if pod.anti_affinity:
            if sign > 0:
                self.anti_affinity_pods[pod.uid] = pod
            else:
                self.anti_affinity_pods.pop(pod.uid, None)
