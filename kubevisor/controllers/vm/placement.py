"""Where a VirtualMachine should run: the scheduler's own filters and scores
applied to a VM. Pure.

A VM is seen by the scheduler's algorithm as a pod of one container that
requests its class's resources (:func:`vm_info`); its
``spec.affinity.vmAffinity``/``vmAntiAffinity`` required terms become
required pod (anti-)affinity terms that only ever match other VMs (VMs
live in the scheduler's view under the namespace ``vm:<namespace>``, which
no pod and no pod's term names). :func:`snapshot` builds the scheduler's
:class:`~kubevisor.controllers.scheduler.cache.Cache` from Nodes, the pods
bound to them and the VMs already placed, so capacity is counted net of
both; a Node whose Ready condition is not True gets the
``node.kubernetes.io/not-ready`` NoSchedule taint in that view (as the node
lifecycle controller would give it), and one whose agent runs no VMs (no
``vmoperator.kubevisor.io/accel`` annotation) the
``vmoperator.kubevisor.io/no-hypervisor`` one. :func:`choose` runs the scheduler's
:func:`~kubevisor.controllers.scheduler.algorithm.schedule` and words a
failure as kube-scheduler does (``0/3 nodes are available: ...``).
Called by :mod:`.controller`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from kubevisor.api.vmoperator import resolve
from kubevisor.controllers.scheduler.algorithm import fit_error, schedule
from kubevisor.controllers.scheduler.cache import Cache
from kubevisor.controllers.scheduler.podinfo import PodInfo, pod_info

JSON = dict[str, Any]

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
NO_HYPERVISOR_TAINT = "vmoperator.kubevisor.io/no-hypervisor"
#: Set on its Node by an agent that runs VMs (kvm or tcg).
ACCEL_ANNOTATION = "vmoperator.kubevisor.io/accel"
_TERMINAL = ("Succeeded", "Failed")
_TERMS = "requiredDuringSchedulingPreferredDuringExecution"


def vm_namespace(namespace: str) -> str:
    """The namespace a VM has in the scheduler's view (apart from pods')."""
    return f"vm:{namespace}"


def _terms(affinity: Mapping[str, Any], key: str) -> list[JSON]:
    terms = ((affinity.get(key) or {}).get(_TERMS)) or ()
    return [{"labelSelector": t.get("labelSelector") or {},
             "topologyKey": t.get("topologyKey") or ""} for t in terms if isinstance(t, Mapping)]


def vm_pod(vm: Mapping[str, Any], requests: Mapping[str, str]) -> JSON:
    """The pod the scheduler's algorithm sees for ``vm``."""
    meta = vm.get("metadata") or {}
    affinity = (vm.get("spec") or {}).get("affinity") or {}
    pod_affinity: JSON = {}
    if aff := _terms(affinity, "vmAffinity"):
        pod_affinity["podAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": aff}
    if anti := _terms(affinity, "vmAntiAffinity"):
        pod_affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": anti}
    spec: JSON = {"containers": [{"name": "vm", "resources": {"requests": dict(requests)}}]}
    if pod_affinity:
        spec["affinity"] = pod_affinity
    return {"metadata": {"name": meta.get("name", ""),
                         "namespace": vm_namespace(meta.get("namespace", "")),
                         "uid": meta.get("uid", ""), "labels": meta.get("labels") or {}},
            "spec": spec}


def vm_info(vm: Mapping[str, Any], vmclass: Mapping[str, Any] | None) -> PodInfo:
    """``vm`` as the scheduler's algorithm sees it, requesting ``vmclass``'s resources."""
    return pod_info(vm_pod(vm, resolve.requests(vmclass)))


def node_view(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` as placement sees it: tainted not-ready unless its Ready
    condition is True, and tainted no-hypervisor unless its agent runs VMs
    (it says which accelerator in the :data:`ACCEL_ANNOTATION`); a VM placed
    on a node whose agent cannot run it would never start nor be cleaned up."""
    ready = next((c for c in (node.get("status") or {}).get("conditions") or ()
                  if c.get("type") == "Ready"), None)
    missing = []
    if ready is None or ready.get("status") != "True":
        missing.append(NOT_READY_TAINT)
    if not ((node.get("metadata") or {}).get("annotations") or {}).get(ACCEL_ANNOTATION):
        missing.append(NO_HYPERVISOR_TAINT)
    spec = dict(node.get("spec") or {})
    taints = list(spec.get("taints") or ())
    have = {t.get("key") for t in taints if t.get("effect") == "NoSchedule"}
    added = [{"key": key, "effect": "NoSchedule"} for key in missing if key not in have]
    if not added:
        return node
    spec["taints"] = taints + added
    return {**node, "spec": spec}


def snapshot(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]],
             placed: Iterable[tuple[PodInfo, str]], *,
             runtime_classes: Mapping[str, Mapping[str, Any]] | None = None) -> Cache:
    """The scheduler's cache of ``nodes`` holding the pods bound to them
    (but finished ones) and the ``placed`` VMs (``(vm_info, node)``)."""
    cache = Cache()
    for node in nodes:
        cache.set_node(node_view(node))
    for pod in pods:
        spec = pod.get("spec") or {}
        node_name = spec.get("nodeName")
        if not node_name or (pod.get("status") or {}).get("phase") in _TERMINAL:
            continue
        rc = (runtime_classes or {}).get(spec.get("runtimeClassName") or "")
        cache.add_pod(pod_info(pod, rc), str(node_name))
    for info, node_name in placed:
        cache.add_pod(info, node_name)
    return cache


def choose(vm: PodInfo, cache: Cache, *, rng: random.Random | None = None) -> tuple[str | None, str]:
    """The node for ``vm``, or None and kube-scheduler's message why none fits."""
    decision, _ = schedule(vm, cache, rng=rng)
    if decision.node is not None:
        return decision.node, ""
    return None, fit_error(decision.total, decision.reasons)
