"""The QEMU hypervisor driver: full VMs on this host, driven over QMP,
KVM when a probe guest runs under it, else TCG. The node agent uses
:class:`QemuDriver` with plain :class:`VMSpec` values (``types``)."""

from kubevisor.runtime.qemu.driver import QemuDriver
from kubevisor.runtime.qemu.types import (
    DirectBoot,
    Disk,
    NetworkInterface,
    Seed,
    VMCapabilities,
    VMRuntime,
    VMSpec,
    VMState,
)

__all__ = ["DirectBoot", "Disk", "NetworkInterface", "QemuDriver", "Seed", "VMCapabilities",
           "VMRuntime", "VMSpec", "VMState"]
