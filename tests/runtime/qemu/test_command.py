"""The QEMU command line built from a VMSpec (pure; no QEMU runs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kubevisor.runtime.qemu.command import build_argv
from kubevisor.runtime.qemu.paths import VMPaths
from kubevisor.runtime.qemu.types import DirectBoot, Disk, NetworkInterface, Seed, VMSpec

PATHS = VMPaths(Path("/var/lib/kv/vms/vm1"))


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def test_minimal_vm_is_q35_daemonized_with_qmp_and_serial_console() -> None:
    argv = build_argv(VMSpec(id="vm1", cpus=2, memory_bytes=512 << 20), PATHS, accel="tcg")
    assert argv[0] == "qemu-system-x86_64"
    assert option(argv, "-machine") == ["q35,accel=tcg"]
    assert option(argv, "-cpu") == ["max"]
    assert option(argv, "-smp") == ["2"] and option(argv, "-m") == ["512M"]
    for flag in ("-nodefaults", "-daemonize", "-no-user-config"):
        assert flag in argv
    assert option(argv, "-display") == ["none"]
    assert option(argv, "-pidfile") == ["/var/lib/kv/vms/vm1/qemu.pid"]
    chardevs = option(argv, "-chardev")
    sockets = f"/run/kubevisor/qemu/{hashlib.sha256(b'/var/lib/kv/vms/vm1').hexdigest()[:20]}"
    assert f"socket,id=qmp,path={sockets}/qmp.sock,server=on,wait=off" in chardevs
    assert (f"socket,id=serial0,path={sockets}/console.sock,server=on,wait=off,"
            "logfile=/var/lib/kv/vms/vm1/console.log,logappend=on") in chardevs
    assert option(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert option(argv, "-serial") == ["chardev:serial0"]
    assert "-incoming" not in argv and "-kernel" not in argv


def test_kvm_uses_the_host_cpu_and_vhost_only_when_asked() -> None:
    spec = VMSpec(id="vm1", cpus=1, memory_bytes=1 << 30,
                  interfaces=[NetworkInterface(mac="52:54:00:00:00:01", tap="tap1", bridge="br0")])
    argv = build_argv(spec, PATHS, accel="kvm", vhost_net=True)
    assert option(argv, "-cpu") == ["host"]
    assert option(argv, "-netdev") == ["tap,id=net0,ifname=tap1,script=no,downscript=no,vhost=on"]
    argv = build_argv(spec, PATHS, accel="tcg", vhost_net=True)
    assert option(argv, "-netdev") == ["tap,id=net0,ifname=tap1,script=no,downscript=no"]


def test_disks_seed_nics_direct_boot_and_boot_order() -> None:
    spec = VMSpec(
        id="vm1", cpus=1, memory_bytes=256 << 20,
        disks=[Disk("/d/data.qcow2"), Disk("/d/root,1.qcow2", boot=True, serial="root"),
               Disk("/d/ro.raw", format="raw", readonly=True)],
        seed=Seed("/d/seed.iso"),
        interfaces=[NetworkInterface(mac="52:54:00:00:00:02", host_forwards=[(8080, 80), (2222, 22)])],
        direct_boot=DirectBoot("/k/vmlinuz", "/k/initrd", "console=ttyS0"),
        uuid="6a1c1f1e-0000-4000-8000-000000000001")
    argv = build_argv(spec, PATHS, accel="tcg")
    drives = option(argv, "-drive")
    # the boot disk comes first, commas in paths are doubled
    assert drives[0] == "file=/d/root,,1.qcow2,format=qcow2,if=none,id=disk0,discard=unmap"
    assert drives[2] == "file=/d/ro.raw,format=raw,if=none,id=disk2,discard=unmap,readonly=on"
    assert drives[3] == "file=/d/seed.iso,format=raw,if=none,id=seed,readonly=on"
    devices = option(argv, "-device")
    assert "virtio-blk-pci,drive=disk0,id=vd0,serial=root,bootindex=1" in devices
    assert "virtio-blk-pci,drive=disk1,id=vd1" in devices
    assert "virtio-blk-pci,drive=seed,id=seed" in devices
    assert option(argv, "-netdev") == [
        "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22"]
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:02,id=nic0" in devices
    assert option(argv, "-kernel") == ["/k/vmlinuz"]
    assert option(argv, "-initrd") == ["/k/initrd"]
    assert option(argv, "-append") == ["console=ttyS0"]
    assert option(argv, "-uuid") == ["6a1c1f1e-0000-4000-8000-000000000001"]


def test_uefi_uses_read_only_code_and_a_per_vm_vars_copy() -> None:
    spec = VMSpec(id="vm1", cpus=1, memory_bytes=256 << 20, firmware="uefi")
    drives = option(build_argv(spec, PATHS, accel="tcg", ovmf_code="/fw/CODE.fd"), "-drive")
    assert drives == ["if=pflash,unit=0,format=raw,readonly=on,file=/fw/CODE.fd",
                      "if=pflash,unit=1,format=raw,file=/var/lib/kv/vms/vm1/OVMF_VARS.fd"]


def test_resume_reads_the_state_file_and_console_log_can_live_elsewhere() -> None:
    spec = VMSpec(id="vm1", cpus=1, memory_bytes=256 << 20, console_log="/logs/vm 1.log")
    argv = build_argv(spec, PATHS, accel="tcg", incoming="/var/lib/kv/vms/vm1/suspend state")
    assert option(argv, "-incoming") == ["exec:cat '/var/lib/kv/vms/vm1/suspend state'"]
    assert any("logfile=/logs/vm 1.log" in c for c in option(argv, "-chardev"))
