"""The Node object this host registers and its status, as pure functions.

:func:`node_object` builds the Node to create (labels, spec.podCIDR,
status); :func:`node_status` the status from :class:`HostFacts`, the
runtime's name/version, and the previous conditions (kubelet's rules:
``lastHeartbeatTime`` is the time of this report, ``lastTransitionTime``
moves only when a condition's status flips). :func:`status_differs` says
whether a report is needed before the periodic one. Called by
:mod:`kubevisor.node.registration`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from kubevisor.node.clock import rfc3339
from kubevisor.node.config import KUBELET_VERSION, NodeConfig
from kubevisor.node.hostinfo import HostFacts

JSON = dict[str, Any]

MEMORY_THRESHOLD_BYTES = 100 * 1024 * 1024  # kubelet's memory.available<100Mi
DISK_THRESHOLD_FRACTION = 0.10  # nodefs.available<10%
INODES_THRESHOLD_FRACTION = 0.05  # nodefs.inodesFree<5%
PID_THRESHOLD_FRACTION = 0.10

#: type -> ((reason, message) when False, (reason, message) when True), as kubelet words them.
PRESSURE: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "MemoryPressure": (("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                       ("KubeletHasInsufficientMemory",
                        "kubelet has insufficient memory available")),
    "DiskPressure": (("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    "PIDPressure": (("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
}
CONDITION_ORDER = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")


def pressures(facts: HostFacts) -> dict[str, bool]:
    disk = (facts.storage_bytes > 0 and facts.storage_available_bytes
            < DISK_THRESHOLD_FRACTION * facts.storage_bytes) or (
        facts.inodes_free_fraction < INODES_THRESHOLD_FRACTION)
    return {
        "MemoryPressure": facts.memory_available_bytes < MEMORY_THRESHOLD_BYTES,
        "DiskPressure": disk,
        "PIDPressure": facts.pids_max - facts.pids_running
        < PID_THRESHOLD_FRACTION * facts.pids_max,
    }


def _kib(n: int) -> str:
    return f"{n // 1024}Ki"


def resources(facts: HostFacts, config: NodeConfig) -> tuple[JSON, JSON]:
    """(capacity, allocatable) as kubelet formats them."""
    capacity = {
        "cpu": str(facts.cpus),
        "memory": _kib(facts.memory_bytes),
        "pods": str(config.max_pods),
        "ephemeral-storage": _kib(facts.storage_bytes),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    cpu_millis = max(facts.cpus * 1000 - config.reserved_cpu_millis, 0)
    storage = int(facts.storage_bytes * (1 - config.reserved_storage_fraction))
    allocatable = {
        "cpu": str(facts.cpus) if cpu_millis % 1000 == 0 and cpu_millis
        else f"{cpu_millis}m",
        "memory": _kib(max(facts.memory_bytes - config.reserved_memory_bytes, 0)),
        "pods": str(config.max_pods),
        "ephemeral-storage": str(storage),
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    return capacity, allocatable


def conditions(previous: Sequence[JSON] | None, facts: HostFacts, *, now: float,
               not_ready: str | None = None) -> list[JSON]:
    """The four node conditions for a report at ``now``. ``not_ready`` is the
    message why the node is not ready (None: ready)."""
    old = {c.get("type"): c for c in previous or ()}
    stamp = rfc3339(now)
    wanted: dict[str, tuple[str, str, str]] = {}
    for type_, flag in pressures(facts).items():
        reason, message = PRESSURE[type_][1 if flag else 0]
        wanted[type_] = ("True" if flag else "False", reason, message)
    if not_ready is None:
        wanted["Ready"] = ("True", "KubeletReady", "kubelet is posting ready status")
    else:
        wanted["Ready"] = ("False", "KubeletNotReady", not_ready)
    out = []
    for type_ in CONDITION_ORDER:
        status, reason, message = wanted[type_]
        prev = old.get(type_) or {}
        transition = prev.get("lastTransitionTime") if prev.get("status") == status else None
        out.append({"type": type_, "status": status, "lastHeartbeatTime": stamp,
                    "lastTransitionTime": transition or stamp, "reason": reason,
                    "message": message})
    # Conditions set by others (e.g. NetworkUnavailable) are kept as they are.
    out.extend(c for t, c in old.items() if t not in CONDITION_ORDER)
    return out


def node_status(facts: HostFacts, config: NodeConfig, *, runtime_version: str,
                previous: JSON | None, now: float, not_ready: str | None = None) -> JSON:
    capacity, allocatable = resources(facts, config)
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": conditions((previous or {}).get("conditions"), facts, now=now,
                                 not_ready=not_ready),
        "addresses": [{"type": "InternalIP", "address": facts.internal_ip},
                      {"type": "Hostname", "address": config.node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.kubelet_port}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.system_uuid,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": facts.architecture,
        },
        **({"images": previous["images"]} if previous and previous.get("images") else {}),
    }


def node_labels(facts: HostFacts, config: NodeConfig) -> dict[str, str]:
    labels = {
        "kubernetes.io/hostname": config.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": facts.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": facts.architecture,
    }
    if config.instance_type:
        labels["node.kubernetes.io/instance-type"] = config.instance_type
    labels.update(config.labels)
    return labels


def node_object(facts: HostFacts, config: NodeConfig, *, runtime_version: str,
                now: float) -> JSON:
    spec: JSON = {}
    if config.pod_cidr:
        spec = {"podCIDR": config.pod_cidr, "podCIDRs": [config.pod_cidr]}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": config.node_name, "labels": node_labels(facts, config),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     **config.annotations}},
        "spec": spec,
        "status": node_status(facts, config, runtime_version=runtime_version,
                              previous=None, now=now),
    }


def _without_heartbeats(status: JSON) -> JSON:
    status = copy.deepcopy(status)
    for cond in status.get("conditions") or ():
        cond.pop("lastHeartbeatTime", None)
    return status


def status_differs(old: JSON | None, new: JSON) -> bool:
    """Whether ``new`` says anything ``old`` did not (heartbeats aside)."""
    if old is None:
        return True
    keys = set(new) | {"capacity", "allocatable", "conditions", "addresses", "nodeInfo"}
    a, b = _without_heartbeats(old), _without_heartbeats(new)
    return any(a.get(k) != b.get(k) for k in keys)


def spec_patch(node: JSON, facts: HostFacts, config: NodeConfig) -> JSON | None:
    """A merge patch bringing an existing Node's labels, the agent's
    annotations and podCIDR in line (None when nothing is missing). An
    existing podCIDR is never changed."""
    md = node.get("metadata") or {}
    patch: JSON = {}
    labels = {k: v for k, v in node_labels(facts, config).items()
              if (md.get("labels") or {}).get(k) != v}
    annotations = {k: v for k, v in config.annotations.items()
                   if (md.get("annotations") or {}).get(k) != v}
    if labels or annotations:
        patch["metadata"] = {k: v for k, v in (("labels", labels), ("annotations", annotations))
                             if v}
    spec = node.get("spec") or {}
    if config.pod_cidr and not spec.get("podCIDR"):
        patch["spec"] = {"podCIDR": config.pod_cidr, "podCIDRs": [config.pod_cidr]}
    return patch or None
