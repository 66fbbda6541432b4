"""The VirtualMachineClass schema: the hardware (CPUs, memory, devices) and
resource policy a VM gets from its class. The same in every served
version. Called by ``kinds``.
"""

from __future__ import annotations

import functools

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator.common import cpu_memory
from kubevisor.api.vmoperator.fields import arr, free, integer, obj, quantity, root, string

VERSIONS = ("v1alpha6", "v1alpha5", "v1alpha4", "v1alpha3")
STORAGE_VERSION = "v1alpha6"

_HARDWARE = obj(
    "The virtual hardware of VMs of this class.",
    cpus=integer("The number of vCPUs.", fmt="int64"),
    devices=obj(
        "Passthrough devices.",
        dynamicDirectPathIODevices=arr(obj(
            "A PCI device passed through.", required=("deviceID", "vendorID"),
            customLabel=string("A label to match the device."),
            deviceID=integer("The PCI device id.", fmt="int64"),
            vendorID=integer("The PCI vendor id.", fmt="int64")), "PCI passthrough devices."),
        vgpuDevices=arr(obj("A virtual GPU.", required=("profileName",),
                            profileName=string("The vGPU profile.")),
                        "Virtual GPUs.", map_keys=("profileName",)),
    ),
    instanceStorage=obj(
        "Local disks given to each VM of the class.",
        storageClass=string("The storage class of the disks."),
        volumes=arr(obj("A disk.", required=("size",), size=quantity("Its size.")), "Disks."),
    ),
    memory=quantity("The guest's memory, e.g. 2Gi."),
)

SPEC = obj(
    "The hardware and policies of a class of VMs.",
    configSpec=free("A raw hypervisor configuration (accepted, not used by kubevisor).",
                    typ="object"),
    controllerName=string("The controller that handles VMs of this class."),
    description=string("A description of the class."),
    hardware=_HARDWARE,
    policies=obj("Resource policies.",
                 resources=obj("CPU and memory requests and limits of each VM; placement "
                               "counts the requests against node capacity.",
                               limits=cpu_memory("Upper bounds."),
                               requests=cpu_memory("Reservations."))),
    reservedProfileID=string("The reserved profile the class belongs to."),
    reservedSlots=integer("Slots reserved for VMs of this class.", minimum=0),
)

STATUS = obj("The observed state of the class (empty in this API version).")


@functools.cache
def schema(version: str) -> JSON:
    del version  # the same in every served version
    return root("VirtualMachineClass gives VMs their CPUs, memory and devices.",
                spec=SPEC, status=STATUS)
