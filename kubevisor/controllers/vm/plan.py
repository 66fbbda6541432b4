"""What the VM controller should do about one VirtualMachine, as a pure
function of what it observed.

:func:`plan` reads an :class:`Observed` (the VM and the class, image,
PersistentVolumeClaims and Secrets it names, as the informers hold them)
and returns a :class:`Plan`: the four conditions the controller owns
(VirtualMachineClassReady, VirtualMachineImageReady,
VirtualMachineStorageReady, VirtualMachineBootstrapReady) with reasons a
user can act on, whether the VM is ready to be placed (class and image
ready, no node yet), and what to do with the host-cleanup finalizer.
:func:`apply_status` merges the controller's fields into a copy of the
VM's status (never touching what the node agent owns, never moving
``status.nodeName`` once set). Called by :mod:`.controller`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubevisor.api.vmoperator import resolve

JSON = dict[str, Any]

GROUP_VERSION = "vmoperator.vmware.com/v1alpha6"
#: The controller's placement condition (kube's PodScheduled for VMs).
SCHEDULED = "VirtualMachineScheduled"
TRUE = "True"  # upstream's reason for a condition that is True


@dataclass(frozen=True, slots=True)
class Cond:
    type: str
    status: str
    reason: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True, slots=True)
class Observed:
    vm: JSON
    vmclass: JSON | None = None
    image: JSON | None = None  # the (C)VMI the VM's image reference resolved to
    pvcs: Mapping[str, JSON] = field(default_factory=dict)  # by name, those that exist
    secrets: Mapping[str, JSON] = field(default_factory=dict)  # by name, those that exist
    node_name: str = ""  # status.nodeName, or where this controller just placed it
    node_exists: bool = True  # the Node named by node_name is in the API


@dataclass(frozen=True, slots=True)
class Plan:
    conditions: tuple[Cond, ...] = ()
    class_ref: JSON | None = None  # status.class
    place: bool = False  # class and image are ready and the VM has no node yet
    add_finalizer: bool = False
    remove_finalizer: bool = False
    deleting: bool = False


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def class_condition(vm: Mapping[str, Any], vmclass: Mapping[str, Any] | None) -> Cond:
    name = resolve.class_name(vm)
    if not name:
        return Cond(resolve.CLASS_READY, "False", "NotSpecified",
                    "spec.className is not set: name a VirtualMachineClass")
    if vmclass is None:
        return Cond(resolve.CLASS_READY, "False", "NotFound",
                    f'VirtualMachineClass "{name}" not found in namespace '
                    f'"{_meta(vm).get("namespace", "")}"')
    return Cond(resolve.CLASS_READY, "True", TRUE)


def image_condition(vm: Mapping[str, Any], image: Mapping[str, Any] | None) -> Cond:
    ref = resolve.image_ref(vm)
    if ref is None:
        return Cond(resolve.IMAGE_READY, "False", "NotSpecified",
                    "spec.imageName is not set: name a VirtualMachineImage or "
                    "ClusterVirtualMachineImage")
    if image is None:
        ns = _meta(vm).get("namespace", "")
        if ref.kind == resolve.CVMI:
            message = f'ClusterVirtualMachineImage "{ref.name}" not found'
        else:
            message = (f'neither VirtualMachineImage "{ref.name}" in namespace "{ns}" nor '
                       f'ClusterVirtualMachineImage "{ref.name}" found')
        return Cond(resolve.IMAGE_READY, "False", "NotFound", message)
    what = f'{image.get("kind") or ref.kind} "{ref.name}"'
    ready = resolve.condition(image, "Ready")
    if ready is None or ready.get("status") != "True":
        why = (ready or {}).get("message") or (ready or {}).get("reason") or \
            "it has no Ready condition"
        return Cond(resolve.IMAGE_READY, "False", "NotReady", f"{what} is not ready: {why}")
    if not resolve.image_digest(image):
        return Cond(resolve.IMAGE_READY, "False", "NotReady",
                    f"{what} has no content digest (annotation {resolve.DIGEST_ANNOTATION}): "
                    "import its file with `kubevisor image add`")
    return Cond(resolve.IMAGE_READY, "True", TRUE)


def claim_names(vm: Mapping[str, Any]) -> list[str]:
    """The PersistentVolumeClaims ``spec.volumes`` names, in order."""
    out = []
    for vol in (vm.get("spec") or {}).get("volumes") or ():
        claim = ((vol or {}).get("persistentVolumeClaim") or {}).get("claimName")
        if isinstance(claim, str) and claim and claim not in out:
            out.append(claim)
    return out


def storage_condition(vm: Mapping[str, Any], pvcs: Mapping[str, Mapping[str, Any]]) -> Cond:
    problems: list[tuple[str, str]] = []
    for claim in claim_names(vm):
        pvc = pvcs.get(claim)
        if pvc is None:
            problems.append(("NotFound", f'PersistentVolumeClaim "{claim}" not found'))
            continue
        phase = (pvc.get("status") or {}).get("phase") or "Pending"
        if phase != "Bound":
            problems.append(("NotBound", f'PersistentVolumeClaim "{claim}" is {phase}, '
                                         "not Bound"))
    if problems:
        return Cond(resolve.STORAGE_READY, "False", problems[0][0],
                    "; ".join(m for _, m in problems))
    return Cond(resolve.STORAGE_READY, "True", TRUE)


def secret_refs(vm: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The Secret keys bootstrap reads: ``(field path, secret name, key)``."""
    cloud_init = ((vm.get("spec") or {}).get("bootstrap") or {}).get("cloudInit") or {}
    refs = []
    raw = cloud_init.get("rawCloudConfig") or {}
    if raw.get("name"):
        refs.append(("spec.bootstrap.cloudInit.rawCloudConfig", str(raw["name"]),
                     str(raw.get("key") or "")))
    users = (cloud_init.get("cloudConfig") or {}).get("users") or ()
    for i, user in enumerate(users):
        for fld in ("passwd", "hashed_passwd"):
            ref = (user or {}).get(fld) or {}
            if isinstance(ref, Mapping) and ref.get("name"):
                refs.append((f"spec.bootstrap.cloudInit.cloudConfig.users[{i}].{fld}",
                             str(ref["name"]), str(ref.get("key") or "")))
    return refs


def secret_names(vm: Mapping[str, Any]) -> list[str]:
    return sorted({name for _, name, _ in secret_refs(vm)})


def _has_key(secret: Mapping[str, Any], key: str) -> bool:
    return any(key in (secret.get(part) or {}) for part in ("data", "stringData"))


def bootstrap_condition(vm: Mapping[str, Any], secrets: Mapping[str, Mapping[str, Any]]) -> Cond:
    for path, name, key in secret_refs(vm):
        secret = secrets.get(name)
        if secret is None:
            return Cond(resolve.BOOTSTRAP_READY, "False", "SecretNotFound",
                        f'Secret "{name}" named by {path} not found')
        if not key or not _has_key(secret, key):
            return Cond(resolve.BOOTSTRAP_READY, "False", "KeyNotFound",
                        f'Secret "{name}" has no key "{key}" (named by {path})')
    return Cond(resolve.BOOTSTRAP_READY, "True", TRUE)


def class_ref(vmclass: Mapping[str, Any] | None) -> JSON | None:
    if vmclass is None:
        return None
    return {"apiVersion": GROUP_VERSION, "kind": "VirtualMachineClass",
            "name": _meta(vmclass).get("name", "")}


def plan(obs: Observed) -> Plan:
    """The controller's decision for one VM."""
    meta = _meta(obs.vm)
    has_finalizer = resolve.FINALIZER in (meta.get("finalizers") or ())
    if meta.get("deletionTimestamp"):
        # A placed VM's node agent cleans the host up and removes the
        # finalizer; if it was never placed, or its node is gone, nobody will.
        unbound = not obs.node_name or not obs.node_exists
        return Plan(deleting=True, remove_finalizer=has_finalizer and unbound)
    conds = (class_condition(obs.vm, obs.vmclass), image_condition(obs.vm, obs.image),
             storage_condition(obs.vm, obs.pvcs), bootstrap_condition(obs.vm, obs.secrets))
    return Plan(
        conditions=conds,
        class_ref=class_ref(obs.vmclass),
        place=not obs.node_name and conds[0].ok and conds[1].ok,
        add_finalizer=bool(obs.node_name) and not has_finalizer,
    )


def apply_status(status: JSON, conditions: Iterable[Cond], *, class_ref: JSON | None,
                 node_name: str, generation: int | None, now: str | None = None) -> bool:
    """Merge the controller's fields into ``status`` (a copy; edited in
    place); True if anything changed. ``status.nodeName`` is written only
    when the status has none."""
    changed = False
    for cond in conditions:
        changed |= resolve.set_condition(status, cond.type, cond.status, cond.reason,
                                         cond.message, generation=generation, now=now)
    if class_ref is not None and status.get("class") != class_ref:
        status["class"] = class_ref
        changed = True
    if node_name and not status.get("nodeName"):
        status["nodeName"] = node_name
        changed = True
    return changed
