"""The contract between the node agent and the QEMU driver: plain specs in,
plain states out, no Kubernetes object (the agent translates a
VirtualMachine into a :class:`VMSpec`). A candidate to merge into
``kubevisor/runtime/types.py`` next to the container contract.

Failure rule (as for every runtime driver): an operation that raises
leaves nothing behind that it created (no QEMU process, tap, socket or
state file of its own making), and teardown is idempotent. QEMU processes
outlive the agent; a new driver on the same state directory finds them
(``list()``/``state()``) by their pid files and QMP sockets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Firmware = Literal["bios", "uefi"]
DiskFormat = Literal["qcow2", "raw"]
Accel = Literal["kvm", "tcg"]
PowerOpMode = Literal["hard", "soft", "trysoft"]
#: "shutdown": defined, no process; "suspended": no process, a saved state file to resume from.
VMStatus = Literal["running", "paused", "shutdown", "suspended"]


@dataclass(frozen=True, slots=True)
class Disk:
    """A virtio-blk disk. ``boot`` puts it first in the firmware's boot
    order. The file belongs to the caller (the driver never deletes it)."""

    path: str
    format: DiskFormat = "qcow2"
    readonly: bool = False
    boot: bool = False
    serial: str = ""


@dataclass(frozen=True, slots=True)
class Seed:
    """A NoCloud seed (ISO9660 or vfat labelled ``cidata``, see
    :mod:`~kubevisor.runtime.qemu.seed`), attached read-only as a virtio disk."""

    path: str


@dataclass(frozen=True, slots=True)
class NetworkInterface:
    """One virtio-net NIC. ``tap`` set: a tap device of that name, created
    by the driver at start and enslaved to ``bridge`` (when set), deleted
    when the VM stops or is deleted. ``tap`` empty: QEMU user networking
    (tests, or hosts without a bridge), with ``host_forwards`` as
    (host port on 127.0.0.1, guest port) TCP pairs."""

    mac: str
    tap: str = ""
    bridge: str = ""
    host_forwards: Sequence[tuple[int, int]] = ()


@dataclass(frozen=True, slots=True)
class DirectBoot:
    """Boot a kernel directly (``-kernel``/``-initrd``/``-append``), no bootloader."""

    kernel: str
    initrd: str = ""
    append: str = ""


@dataclass(frozen=True, slots=True)
class VMSpec:
    """One virtual machine. ``id`` is unique on the host and stable across
    agent restarts (the agent derives it from the VM's uid); it names the
    VM's state directory. ``uuid`` is the SMBIOS system UUID (biosUUID).
    ``console_log`` receives everything the guest writes on its serial
    console (default: ``console.log`` in the state directory)."""

    id: str
    cpus: int
    memory_bytes: int
    firmware: Firmware = "bios"
    disks: Sequence[Disk] = ()
    seed: Seed | None = None
    interfaces: Sequence[NetworkInterface] = ()
    direct_boot: DirectBoot | None = None
    uuid: str = ""
    console_log: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VMState:
    """What the driver knows of one VM, read afresh from the host."""

    id: str
    status: VMStatus
    pid: int = 0
    accel: Accel | None = None  # of the running process
    qmp_socket: str = ""
    console_socket: str = ""  # a stream socket: the serial console (one client at a time)
    console_log: str = ""
    state_file: str = ""  # the saved state when suspended
    started_at: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VMCapabilities:
    """What this host's QEMU can do, probed once per host boot."""

    accel: Accel
    reason: str  # why this accelerator (e.g. why KVM is not used)
    qemu_version: str
    uefi: bool  # OVMF firmware present
    machine: str = "q35"


class VMRuntime(Protocol):
    """Virtual machines on this host (QEMU underneath)."""

    capabilities: VMCapabilities

    async def create(self, spec: VMSpec) -> VMState:
        """Define the VM (or redefine it: the new spec applies at its next
        start); does not start it."""
    async def start(self, vm_id: str) -> VMState:
        """Power on; a suspended VM resumes from its saved state."""
    async def state(self, vm_id: str) -> VMState | None: ...
    async def list(self) -> list[VMState]: ...
    async def power_off(self, vm_id: str, *, mode: PowerOpMode = "hard",
                        timeout: float = 60.0) -> VMState: ...
    async def reboot(self, vm_id: str, *, mode: PowerOpMode = "hard",
                     timeout: float = 60.0) -> VMState: ...
    async def pause(self, vm_id: str) -> VMState: ...
    async def unpause(self, vm_id: str) -> VMState: ...
    async def suspend(self, vm_id: str) -> VMState:
        """Save the guest's memory and devices to a state file; QEMU exits."""
    async def resume(self, vm_id: str) -> VMState: ...
    async def delete(self, vm_id: str) -> None:
        """Stop QEMU (hard) and remove the state directory and taps; idempotent."""
