"""The VM Operator kinds as ResourceTypes: one per kind and served
version, in the group ``vmoperator.vmware.com``, with upstream's plural,
short names, scope and columns, status subresource, schemas, defaults and
a converter (v1alpha6 is stored; v1alpha5, v1alpha4 and v1alpha3 are
converted on read and write); VirtualMachines are selectable by
``status.nodeName`` (as Pods by spec.nodeName). Served like custom resources (JSON merge
patch, generation, pruning). Called by ``api.builtin``.
"""

from __future__ import annotations

from collections.abc import Callable

from kubevisor.api.kinds import JSON, ResourceType
from kubevisor.api.vmoperator import columns, images, requests, vm, vmclass, vmservice
from kubevisor.api.vmoperator.conversion import Converter, Move
from kubevisor.api.vmoperator.defaults import defaulter_for

GROUP = "vmoperator.vmware.com"
VERSIONS = ("v1alpha6", "v1alpha5", "v1alpha4", "v1alpha3")  # preferred first
STORAGE_VERSION = "v1alpha6"

# What older versions name differently (see vm.py, images.py).
_VM_MOVES: dict[str, tuple[Move, ...]] = {
    "v1alpha4": (Move("spec.cdrom", "spec.hardware.cdrom"),),
    "v1alpha3": (
        Move("spec.cdrom", "spec.hardware.cdrom"),
        Move("status.host", "status.nodeName"),
        Move("status.storage.usage.total", "status.storage.total"),
        Move("status.storage.usage.disks", "status.storage.requested.disks"),
    ),
}
_IMAGE_DISK_MOVES = (Move("capacity", "limit", "status.disks[]"),
                     Move("size", "requested", "status.disks[]"))
_IMAGE_MOVES = {"v1alpha4": _IMAGE_DISK_MOVES, "v1alpha3": _IMAGE_DISK_MOVES}


def _kind(kind: str, plural: str, schema: Callable[[str], JSON], *,
          namespaced: bool = True, short_names: tuple[str, ...] = (),
          moves: dict[str, tuple[Move, ...]] | None = None,
          selectable_fields: tuple[str, ...] = ()) -> list[ResourceType]:
    converter = Converter(group=GROUP, storage_version=STORAGE_VERSION, schema=schema,
                          moves=moves or {},
                          hub_defaulter=defaulter_for(kind, schema(STORAGE_VERSION)))
    out = []
    for version in VERSIONS:
        root = schema(version)
        out.append(ResourceType(
            group=GROUP, version=version, kind=kind, plural=plural, singular=kind.lower(),
            namespaced=namespaced, short_names=short_names, has_status=True,
            printer_columns=columns.columns_for(kind), schema=root,
            storage=version == STORAGE_VERSION, custom=True,
            defaulter=defaulter_for(kind, root), converter=converter,
            selectable_fields=selectable_fields,
        ))
    return out


def resource_types() -> list[ResourceType]:
    """Every VM Operator kind at every served version."""
    return [
        # Node agents watch the VMs placed on their node by status.nodeName.
        *_kind("VirtualMachine", "virtualmachines", vm.schema, short_names=("vm",),
               moves=_VM_MOVES, selectable_fields=("status.nodeName",)),
        *_kind("VirtualMachineClass", "virtualmachineclasses", vmclass.schema,
               short_names=("vmclass",)),
        *_kind("VirtualMachineImage", "virtualmachineimages",
               lambda v: images.schema("VirtualMachineImage", v),
               short_names=("vmi", "vmimage"), moves=_IMAGE_MOVES),
        *_kind("ClusterVirtualMachineImage", "clustervirtualmachineimages",
               lambda v: images.schema("ClusterVirtualMachineImage", v), namespaced=False,
               short_names=("cvmi", "cvmimage", "clustervmi", "clustervmimage"),
               moves=_IMAGE_MOVES),
        *_kind("VirtualMachineService", "virtualmachineservices", vmservice.schema,
               short_names=("vmservice",)),
        *_kind("VirtualMachineWebConsoleRequest", "virtualmachinewebconsolerequests",
               requests.web_console),
        *_kind("VirtualMachinePublishRequest", "virtualmachinepublishrequests",
               requests.publish, short_names=("vmpub",)),
        *_kind("VirtualMachineSetResourcePolicy", "virtualmachinesetresourcepolicies",
               requests.resource_policy),
    ]
