"""The QEMU command line for a :class:`~kubevisor.runtime.qemu.types.VMSpec`:
a pure function, unit-tested without QEMU. q35 machine, virtio-blk disks,
virtio-net NICs, the serial console on a unix socket with a log file, QMP
on a unix socket, OVMF in pflash for UEFI (the code read-only, a per-VM
copy of the vars), ``-daemonize`` with a pid file so QEMU outlives the
agent. Called by :mod:`~kubevisor.runtime.qemu.driver`.
"""

from __future__ import annotations

import shlex

from kubevisor.runtime.qemu.paths import VMPaths
from kubevisor.runtime.qemu.probe import OVMF_CODE, QEMU
from kubevisor.runtime.qemu.types import Accel, VMSpec


def _opt(value: str) -> str:
    """A value inside QEMU's comma-separated options (commas double)."""
    return value.replace(",", ",,")


def build_argv(spec: VMSpec, paths: VMPaths, *, accel: Accel, incoming: str | None = None,
               qemu: str = QEMU, ovmf_code: str = OVMF_CODE, vhost_net: bool = False) -> list[str]:
    """The argv that starts ``spec``; ``incoming`` is a saved state file to
    resume from; ``vhost_net`` moves tap NICs' data path into the host
    kernel (only with KVM and ``/dev/vhost-net``)."""
    assert spec.cpus >= 1, "a VM needs at least one vCPU"
    assert spec.memory_bytes >= 1 << 20, "memory_bytes is in bytes"
    console_log = spec.console_log or str(paths.console_log)
    argv = [
        qemu, "-name", f"guest={_opt(spec.id)},debug-threads=on",
        "-machine", f"q35,accel={accel}",
        "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(spec.cpus),
        "-m", f"{max(1, spec.memory_bytes >> 20)}M",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-daemonize", "-pidfile", str(paths.pidfile),
        "-chardev", f"socket,id=qmp,path={_opt(str(paths.qmp))},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", (f"socket,id=serial0,path={_opt(str(paths.console))},server=on,wait=off,"
                     f"logfile={_opt(console_log)},logappend=on"),
        "-serial", "chardev:serial0",
        "-rtc", "base=utc",
    ]
    if spec.uuid:
        argv += ["-uuid", spec.uuid]
    if spec.firmware == "uefi":
        argv += ["-drive", f"if=pflash,unit=0,format=raw,readonly=on,file={_opt(ovmf_code)}",
                 "-drive", f"if=pflash,unit=1,format=raw,file={_opt(str(paths.uefi_vars))}"]
    boot_index = 1
    for n, disk in enumerate(sorted(spec.disks, key=lambda d: not d.boot)):
        drive = f"file={_opt(disk.path)},format={disk.format},if=none,id=disk{n},discard=unmap"
        if disk.readonly:
            drive += ",readonly=on"
        device = f"virtio-blk-pci,drive=disk{n},id=vd{n}"
        if disk.serial:
            device += f",serial={_opt(disk.serial)}"
        if disk.boot:
            device += f",bootindex={boot_index}"
            boot_index += 1
        argv += ["-drive", drive, "-device", device]
    if spec.seed is not None:
        argv += ["-drive", f"file={_opt(spec.seed.path)},format=raw,if=none,id=seed,readonly=on",
                 "-device", "virtio-blk-pci,drive=seed,id=seed"]
    for n, nic in enumerate(spec.interfaces):
        if nic.tap:
            netdev = f"tap,id=net{n},ifname={_opt(nic.tap)},script=no,downscript=no"
            if vhost_net and accel == "kvm":
                netdev += ",vhost=on"
        else:
            netdev = f"user,id=net{n}" + "".join(
                f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for host, guest in nic.host_forwards)
        argv += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=net{n},mac={nic.mac},id=nic{n}"]
    argv += ["-device", "virtio-rng-pci,id=rng0"]
    if spec.direct_boot is not None:
        argv += ["-kernel", spec.direct_boot.kernel]
        if spec.direct_boot.initrd:
            argv += ["-initrd", spec.direct_boot.initrd]
        if spec.direct_boot.append:
            argv += ["-append", spec.direct_boot.append]
    if incoming is not None:
        argv += ["-incoming", f"exec:cat {shlex.quote(incoming)}"]
    return argv
