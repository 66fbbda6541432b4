"""Pure readings of VM Operator objects that the VM controller and the node
agent share: which class and image a VirtualMachine names, the hardware and
placement requests of a class, an image's digest and format, and the
Kubernetes-style conditions on a VM's status (the names of the condition
types and of the host-cleanup finalizer live here too).

Nothing here does I/O or mutates its input, except :func:`set_condition`,
which edits the status dict it is given (callers pass a copy, never an
object from a cache). Called by ``kubevisor.controllers.vm`` and
``kubevisor.node``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kubevisor.api.errors import QuantityError
from kubevisor.api.quantity import parse_quantity

JSON = dict[str, Any]

CLASS_READY = "VirtualMachineClassReady"
IMAGE_READY = "VirtualMachineImageReady"
STORAGE_READY = "VirtualMachineStorageReady"
BOOTSTRAP_READY = "VirtualMachineBootstrapReady"
CREATED = "VirtualMachineCreated"
POWER_SYNCED = "VirtualMachinePowerStateSynced"
READY = "Ready"
#: Kept on a placed VM until its node agent has removed everything it made.
FINALIZER = "vmoperator.kubevisor.io/host-cleanup"
#: The (C)VMI annotation holding the image file's content digest
#: (the same string as ``kubevisor.runtime.qemu.library.DIGEST_ANNOTATION``).
DIGEST_ANNOTATION = "vmoperator.kubevisor.io/image-digest"

VMI = "VirtualMachineImage"
CVMI = "ClusterVirtualMachineImage"
ImageKind = Literal["VirtualMachineImage", "ClusterVirtualMachineImage"]

DEFAULT_CPUS = 1
DEFAULT_MEMORY_BYTES = 512 * 2**20


@dataclass(frozen=True, slots=True)
class Hardware:
    """The virtual hardware a class gives its VMs."""

    cpus: int
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class ImageRef:
    """The image a VM names. Built from ``spec.imageName`` the kind is
    VirtualMachineImage: look that up in the VM's namespace first, then a
    ClusterVirtualMachineImage of the same name."""

    kind: ImageKind
    name: str


def _get(obj: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def class_name(vm: Mapping[str, Any]) -> str:
    """``spec.className``, else ``spec.class.name``; "" when the VM names none."""
    name = _get(vm, "spec", "className")
    if isinstance(name, str) and name:
        return name
    ref = _get(vm, "spec", "class", "name")
    return ref if isinstance(ref, str) else ""


def _quantity(value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def hardware(vmclass: Mapping[str, Any] | None) -> Hardware:
    """The CPUs and memory of ``vmclass`` (1 CPU / 512Mi where it says nothing)."""
    cpus = _get(vmclass, "spec", "hardware", "cpus")
    memory = _quantity(_get(vmclass, "spec", "hardware", "memory"))
    return Hardware(
        cpus=cpus if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 0
        else DEFAULT_CPUS,
        memory_bytes=int(memory) if memory is not None and memory > 0 else DEFAULT_MEMORY_BYTES,
    )


def requests(vmclass: Mapping[str, Any] | None) -> dict[str, str]:
    """The pod-style resource requests a VM of ``vmclass`` is placed with:
    ``spec.policies.resources.requests`` when it sets any, else the
    hardware's CPUs and memory."""
    explicit = _get(vmclass, "spec", "policies", "resources", "requests")
    if isinstance(explicit, Mapping):
        out = {k: str(v) for k, v in explicit.items() if k in ("cpu", "memory") and v not in
               (None, "")}
        if out:
            return out
    hw = hardware(vmclass)
    return {"cpu": str(hw.cpus), "memory": str(hw.memory_bytes)}


def image_ref(vm: Mapping[str, Any]) -> ImageRef | None:
    """The image ``vm`` is created from: ``spec.image`` {kind, name}, else
    ``spec.imageName``; None when it names none."""
    ref = _get(vm, "spec", "image")
    if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) and ref["name"]:
        kind = CVMI if ref.get("kind") == CVMI else VMI
        return ImageRef(kind=kind, name=ref["name"])
    name = _get(vm, "spec", "imageName")
    if isinstance(name, str) and name:
        return ImageRef(kind=VMI, name=name)
    return None


def image_digest(image_obj: Mapping[str, Any] | None) -> str:
    """The content digest ``kubevisor image add`` recorded ("" if absent)."""
    value = _get(image_obj, "metadata", "annotations", DIGEST_ANNOTATION)
    return value if isinstance(value, str) else ""


def image_format(image_obj: Mapping[str, Any] | None) -> str:
    """The disk format of the image's file (``status.type``: qcow2 or raw; "" if unknown)."""
    value = _get(image_obj, "status", "type")
    return value.lower() if isinstance(value, str) else ""


def condition(obj: Mapping[str, Any] | None, type: str) -> JSON | None:
    """The condition ``type`` of ``obj.status.conditions``, or None."""
    for cond in _get(obj, "status", "conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == type:
            return dict(cond)
    return None


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(obj_status: dict[str, Any], type: str, status: str, reason: str,
                  message: str, *, generation: int | None,
                  now: str | None = None) -> bool:
    """Set condition ``type`` in ``obj_status["conditions"]`` (in place: pass
    a copy); True if anything changed. ``lastTransitionTime`` moves only
    when ``status`` does; ``observedGeneration`` is ``generation``."""
    assert status in ("True", "False", "Unknown"), f"bad condition status {status!r}"
    conditions = [dict(c) for c in obj_status.get("conditions") or () if isinstance(c, Mapping)]
    stamp = now or now_rfc3339()
    for i, cond in enumerate(conditions):
        if cond.get("type") != type:
            continue
        new = dict(cond, status=status, reason=reason, message=message)
        if generation is not None:
            new["observedGeneration"] = generation
        if cond.get("status") != status or not cond.get("lastTransitionTime"):
            new["lastTransitionTime"] = stamp
        if new == cond:
            return False
        conditions[i] = new
        obj_status["conditions"] = conditions
        return True
    new = {"type": type, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": stamp}
    if generation is not None:
        new["observedGeneration"] = generation
    conditions.append(new)
    obj_status["conditions"] = conditions
    return True
