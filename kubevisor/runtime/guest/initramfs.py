"""The test guest's initramfs: busybox-static and its applets, the kernel
modules the guest needs (virtio PCI/block/net/console, ISO9660 and vfat
for the seed, the ACPI power button and evdev for acpid), and the scripts
in ``rootfs/`` (``/init``, the YAML flattener, the cloud-config
translator, the DHCP hook, the power-button action), as a gzipped newc
cpio. Called by :mod:`~kubevisor.runtime.guest.image`.
"""

from __future__ import annotations

import gzip
import io
import subprocess
from importlib import resources
from pathlib import Path

from kubevisor.runtime.guest.cpio import CpioWriter
from kubevisor.runtime.guest.kernel import KernelTree, module_closure
from kubevisor.runtime.qemu.errors import GuestImageError

BUSYBOX = Path("/bin/busybox")
MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "isofs", "vfat",
           "nls_cp437", "nls_ascii", "nls_utf8", "button", "evdev"]
#: rootfs/ file -> (path in the guest, mode)
SCRIPTS = {
    "init.sh": ("init", 0o755),
    "yaml.awk": ("etc/kubevisor/yaml.awk", 0o644),
    "cloudinit.awk": ("etc/kubevisor/cloudinit.awk", 0o644),
    "udhcpc.sh": ("etc/kubevisor/udhcpc.sh", 0o755),
    "poweroff.sh": ("etc/acpi/PWRF/00000080", 0o755),
}


def script(name: str) -> bytes:
    return resources.files("kubevisor.runtime.guest").joinpath("rootfs", name).read_bytes()


def applets() -> list[str]:
    if not BUSYBOX.exists():
        raise GuestImageError(f"{BUSYBOX} is missing (Debian package busybox-static)")
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def build_initramfs(kernel: KernelTree) -> bytes:
    """The gzipped cpio archive, deterministic for the same inputs."""
    raw = io.BytesIO()
    cpio = CpioWriter(raw)
    for directory in ("bin", "sbin", "dev", "proc", "sys", "run", "tmp", "root", "etc/acpi/PWRB",
                      "lib/modules", "seed", "www", "var/run", "var/log"):
        cpio.directory(directory)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in applets():
        if applet != "busybox":
            cpio.symlink(f"bin/{applet}", "busybox")
    for name, (dest, mode) in SCRIPTS.items():
        cpio.file(dest, script(name), mode)
    cpio.symlink("etc/acpi/PWRB/00000080", "../PWRF/00000080")
    order = []
    for ko in module_closure(kernel, MODULES):
        name = ko.name.removesuffix(".ko")
        cpio.file(f"lib/modules/{name}.ko", ko.read_bytes())
        order.append(name)
    cpio.file("etc/modules", ("\n".join(order) + "\n").encode())
    cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cpio.file("etc/group", b"root:x:0:\n")
    cpio.close()
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
