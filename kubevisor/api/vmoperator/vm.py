"""The VirtualMachine schema in every served version.

v1alpha6 is written out in ``vmspec``/``vmstatus``; each older version is
v1alpha6 minus the fields it did not have yet, plus the few it named
differently (v1alpha3/4 ``spec.cdrom`` is v1alpha5+ ``spec.hardware.cdrom``;
v1alpha3 ``status.host`` is ``status.nodeName``; v1alpha3
``status.storage.usage.total`` is ``status.storage.total``). The renames
are undone by ``conversion``. Called by ``kinds``.
"""

from __future__ import annotations

import functools

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator import vmspec, vmstatus
from kubevisor.api.vmoperator.fields import arr, at, quantity, replace, root, string, without

DESCRIPTION = ("VirtualMachine is a virtual machine declared with kubectl: its class (CPUs and "
               "memory), its image, its power state, how its guest is bootstrapped, its network "
               "and volumes.")

# Fields v1alpha6 has that v1alpha5 does not.
_NEW_IN_V6 = (
    "spec.advanced.cpuAffinityExclusiveNoStatsEnabled", "spec.advanced.extraConfig",
    "spec.advanced.hugePages1GEnabled", "spec.advanced.pnumaNodeAffinity",
    "spec.advanced.preferHtEnabled", "spec.advanced.timeTrackerLowLatencyEnabled",
    "spec.advanced.vmxSwapEnabled", "spec.bootstrap.disabled", "spec.cpuAdvanced",
    "spec.memoryAdvanced", "spec.network.interfaces[].advancedProperties",
    "spec.network.interfaces[].ipamModes", "spec.network.interfaces[].type",
    "spec.network.interfaces[].vmxnet3", "spec.network.interfaces[].vnumaNodeID",
    "spec.network.vlans", "spec.resources", "spec.volumeAttributesClassName",
    "status.extraConfig", "status.hardware.cpu.coresPerSocket",
    "status.hardware.cpu.hotAddEnabled", "status.hardware.cpu.iommuEnabled",
    "status.hardware.cpu.latencySensitivity", "status.hardware.cpu.limit",
    "status.hardware.cpu.nestedHardwareVirtualizationEnabled",
    "status.hardware.cpu.performanceCountersEnabled",
    "status.hardware.cpu.simultaneousThreads", "status.hardware.cpu.vnuma",
    "status.hardware.memory.hotAddEnabled", "status.hardware.memory.limit",
    "status.hardware.memory.reservationLockedToMax",
    "status.network.interfaces[].vmxnet3", "status.network.interfaces[].vnumaNodeID",
)

# Fields v1alpha5 has that v1alpha4 does not (besides spec.hardware, which
# replaces v1alpha4's spec.cdrom).
_NEW_IN_V5 = (
    "spec.bootOptions", "spec.bootstrap.cloudInit.waitOnNetwork4",
    "spec.bootstrap.cloudInit.waitOnNetwork6",
    "spec.bootstrap.linuxPrep.customizeAtNextPowerOn",
    "spec.bootstrap.linuxPrep.expirePasswordAfterNextLogin",
    "spec.bootstrap.linuxPrep.password", "spec.bootstrap.linuxPrep.scriptText",
    "spec.bootstrap.sysprep.customizeAtNextPowerOn",
    "spec.bootstrap.sysprep.sysprep.expirePasswordAfterNextLogin",
    "spec.bootstrap.sysprep.sysprep.scriptText", "spec.class", "spec.crypto.vTPMMode",
    "spec.currentSnapshotName", "spec.hardware", "spec.policies",
    "spec.volumes[].applicationType", "spec.volumes[].controllerBusNumber",
    "spec.volumes[].controllerType", "spec.volumes[].diskMode", "spec.volumes[].removable",
    "spec.volumes[].sharingMode", "spec.volumes[].unitNumber",
    "status.class", "status.crypto.hasVTPM", "status.currentSnapshot", "status.guest",
    "status.hardware", "status.policies", "status.provider", "status.rootSnapshots",
    "status.storage.usage.snapshots", "status.volumes[].controllerBusNumber",
    "status.volumes[].controllerType", "status.volumes[].diskMode",
    "status.volumes[].sharingMode", "status.volumes[].unitNumber",
)

# Fields v1alpha4 has that v1alpha3 does not (besides the v1alpha3 renames).
_NEW_IN_V4 = (
    "spec.promoteDisksMode", "status.nodeName", "status.storage.requested",
    "status.storage.total", "status.volumes[].requested",
)

VERSIONS = ("v1alpha6", "v1alpha5", "v1alpha4", "v1alpha3")
STORAGE_VERSION = "v1alpha6"


def _v6() -> JSON:
    return root(DESCRIPTION, spec=vmspec.SPEC, status=vmstatus.STATUS)


def _v5() -> JSON:
    return without(_v6(), *_NEW_IN_V6)


def _v4() -> JSON:
    v5 = _v5()
    cdrom_items = without(at(v5, "spec.hardware.cdrom")["items"],
                          "controllerBusNumber", "controllerType", "unitNumber")
    v4 = without(v5, *_NEW_IN_V5)
    return replace(v4, "spec.cdrom", arr(cdrom_items, "CD-ROM drives.", map_keys=("name",)))


def _v3() -> JSON:
    v3 = without(_v4(), *_NEW_IN_V4)
    v3 = replace(v3, "status.host", string("The node the VM runs on."))
    v3 = replace(v3, "status.class", at(_v5(), "status.class"))
    return replace(v3, "status.storage.usage.total", quantity("All storage the VM uses."))


@functools.cache
def schema(version: str) -> JSON:
    """The root openAPIV3Schema of VirtualMachine at ``version``; cached,
    callers must not mutate it."""
    build = {"v1alpha6": _v6, "v1alpha5": _v5, "v1alpha4": _v4, "v1alpha3": _v3}[version]
    return build()
