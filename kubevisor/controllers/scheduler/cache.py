"""The scheduler's snapshot of the cluster, kept current from informer events.

Nodes by name (:class:`NodeInfo`, whose totals change in place as pods
come and go), the order in which the algorithm samples them (a list with
O(1) removal), every pod bound or assumed to a node by uid, and namespace
labels (for affinity terms with a namespaceSelector). Nothing is recomputed
from scratch: each informer event touches one node. A pod the scheduler
has chosen a node for is *assumed* there at once, so the next pod sees the
capacity it takes while its binding is still in flight; the informer's
event for the bound pod confirms it, and a failed binding forgets it.
Everything runs on one event loop, so the scheduling algorithm reads the
cache directly, with no copying. Owned by :mod:`.scheduler`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubevisor.controllers.scheduler.nodeinfo import NodeInfo
from kubevisor.controllers.scheduler.podinfo import PodInfo

JSON = dict[str, Any]


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.order: list[NodeInfo] = []  # known nodes, in sampling order
        self._position: dict[str, int] = {}
        self.pods: dict[str, tuple[PodInfo, str]] = {}  # uid -> (pod, node name)
        self.assumed: set[str] = set()
        self.namespace_labels: dict[str, Mapping[str, str]] = {}
        #: Pods with required anti-affinity terms anywhere (0: skip that check).
        self.anti_affinity_pods = 0
        #: Pods with required affinity or anti-affinity anywhere.
        self.affinity_pods = 0

    def __len__(self) -> int:
        return len(self.order)

    # -- nodes ---------------------------------------------------------------

    def set_node(self, node: Mapping[str, Any]) -> NodeInfo:
        name = str((node.get("metadata") or {}).get("name") or "")
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        if not info.known:
            self._position[name] = len(self.order)
            self.order.append(info)
        info.set_node(node)
        return info

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        pos = self._position.pop(name, None)
        if pos is not None:
            last = self.order.pop()
            if last is not info:
                self.order[pos] = last
                self._position[last.name] = pos
        if info.pods:
            info.known = False  # kept as a placeholder for pods still naming it
        else:
            del self.nodes[name]

    def node_infos(self) -> Iterator[NodeInfo]:
        return iter(self.order)

    # -- pods ----------------------------------------------------------------

    def add_pod(self, pod: PodInfo, node: str) -> None:
        """Record ``pod`` on ``node`` (replacing what was known of it)."""
        self.remove_pod(pod.uid)
        info = self.nodes.get(node)
        if info is None:
            info = self.nodes[node] = NodeInfo(node)
        info.add_pod(pod)
        self.pods[pod.uid] = (pod, node)
        if pod.anti_affinity:
            self.anti_affinity_pods += 1
        if pod.anti_affinity or pod.affinity:
            self.affinity_pods += 1

    def remove_pod(self, uid: str) -> PodInfo | None:
        entry = self.pods.pop(uid, None)
        self.assumed.discard(uid)
        if entry is None:
            return None
        pod, node = entry
        info = self.nodes.get(node)
        if info is not None:
            info.remove_pod(pod)
            if not info.known and not info.pods:
                del self.nodes[node]
        if pod.anti_affinity:
            self.anti_affinity_pods -= 1
        if pod.anti_affinity or pod.affinity:
            self.affinity_pods -= 1
        return pod

    def assume(self, pod: PodInfo, node: str) -> None:
        self.add_pod(pod, node)
        self.assumed.add(pod.uid)

    def confirm(self, pod: PodInfo, node: str) -> None:
        """The informer shows ``pod`` bound to ``node``."""
        self.add_pod(pod, node)  # replaces an assumed entry, on whichever node

    def forget(self, uid: str) -> None:
        """Drop an assumed pod whose binding failed (a confirmed one stays)."""
        if uid in self.assumed:
            self.remove_pod(uid)

    def node_of(self, uid: str) -> str | None:
        entry = self.pods.get(uid)
        return entry[1] if entry is not None else None
