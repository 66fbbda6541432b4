"""The image library's schemas: VirtualMachineImage (namespaced) and
ClusterVirtualMachineImage share one shape. Their status is published by
``kubevisor image add`` (disks, firmware, OS info, conditions). v1alpha3
and v1alpha4 named the disk sizes ``capacity`` and ``size`` (now ``limit``
and ``requested``; ``conversion`` maps them). Called by ``kinds``.
"""

from __future__ import annotations

import functools

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator.common import CONTROLLER_TYPES, conditions, key_values, typed_ref
from kubevisor.api.vmoperator.fields import (
    arr,
    integer,
    obj,
    quantity,
    replace,
    root,
    string,
    without,
)

VERSIONS = ("v1alpha6", "v1alpha5", "v1alpha4", "v1alpha3")
STORAGE_VERSION = "v1alpha6"

_DISK = obj(
    "One disk of the image.",
    required=("name",),
    controllerBusNumber=integer("The bus number of the disk's controller."),
    controllerType=string("The type of the disk's controller.", enum=CONTROLLER_TYPES),
    limit=quantity("The disk's virtual size: the most it can hold."),
    name=string("The disk's name."),
    requested=quantity("The space the disk's content takes."),
    unitNumber=integer("The disk's unit number on its controller."),
)

_SPEC = obj(
    "The desired state of an image.",
    providerRef=typed_ref("The object that provides the image's content."),
)

_STATUS = obj(
    "The observed state of an image: what its content is.",
    capabilities=arr(string(), "What the image can do, e.g. cloud-init.", list_type="set"),
    conditions=conditions("The image's conditions; Ready when it can be used.", keyed=True),
    disks=arr(_DISK, "The image's disks.", map_keys=("name",)),
    firmware=string("The firmware the image boots with: BIOS or UEFI (efi)."),
    hardwareVersion=integer("The virtual hardware version the image asks for."),
    name=string("The image's display name."),
    osInfo=obj("The guest operating system in the image.",
               id=string("The OS identifier."), type=string("The OS type, e.g. linux."),
               version=string("The OS version.")),
    ovfProperties=arr(obj("An OVF property.", required=("key", "type"),
                          default=string("Its default value."), key=string("Its key."),
                          type=string("Its type.")), "OVF properties the image declares."),
    productInfo=obj("Product information.",
                    fullVersion=string("The full version."), product=string("The product."),
                    vendor=string("The vendor."), version=string("The short version.")),
    providerContentVersion=string("The provider's version of the content."),
    providerItemID=string("The provider's id of the item."),
    type=string("The image format, e.g. qcow2, raw, OVF or ISO."),
    vmwareSystemProperties=key_values("Platform properties of the image.", keyed=False),
)


def _v6(kind_desc: str) -> JSON:
    return root(kind_desc, spec=_SPEC, status=_STATUS)


def _v4(kind_desc: str) -> JSON:
    disk = without(_DISK, "controllerBusNumber", "controllerType", "limit", "name",
                   "requested", "unitNumber")
    disk = replace(disk, "capacity", quantity("The disk's virtual size."))
    disk = replace(disk, "size", quantity("The space the disk's content takes."))
    return replace(_v6(kind_desc), "status.disks", arr(disk, "The image's disks."))


@functools.cache
def schema(kind: str, version: str) -> JSON:
    """The root schema of VirtualMachineImage or ClusterVirtualMachineImage."""
    where = "in the namespace" if kind == "VirtualMachineImage" else "in every namespace"
    desc = f"{kind} is a VM disk image usable {where}, from the image library."
    return _v6(desc) if version in ("v1alpha6", "v1alpha5") else _v4(desc)
