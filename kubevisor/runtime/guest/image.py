"""The small test guest, built offline from Debian packages and cached:
Debian's kernel (``linux-image-amd64``) booted directly (``-kernel`` /
``-initrd``) with a busybox initramfs that reads a NoCloud seed. It has
no bootloader and no root disk: the disks a VM of this image gets are
plain data disks (:func:`build_test_disk` makes a small qcow2 one, the
"image" the image library and linked clones are tested with). The real
Debian cloud image (debootstrap, real cloud-init, a bootable disk) is
built elsewhere.

Called by tests, benchmarks and ``kubevisor image`` helpers. The result
lives in ``<cache_dir>/test-guest-<key>/``, where the key hashes every
input, so a second call costs a few stat()s.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubevisor.runtime.guest.initramfs import BUSYBOX, MODULES, SCRIPTS, build_initramfs, script
from kubevisor.runtime.guest.kernel import fetch_kernel
from kubevisor.runtime.qemu.errors import GuestImageError

#: Kernel command line of the test guest (serial console on the first UART).
APPEND = "console=ttyS0 panic=-1 loglevel=4"
READY_PREFIX = "KUBEVISOR-READY"


@dataclass(frozen=True, slots=True)
class GuestImage:
    """What a :class:`~kubevisor.runtime.qemu.types.VMSpec` needs for direct boot."""

    kernel: str
    initrd: str
    append: str = APPEND
    kernel_version: str = ""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def build_test_guest(cache_dir: str | os.PathLike[str]) -> GuestImage:
    """Build (or find in ``cache_dir``) the test guest's kernel and initramfs."""
    cache = Path(cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers build it once, not side by side
        return _build(cache)


def _build(cache: Path) -> GuestImage:
    kernel = fetch_kernel(cache)
    digest = hashlib.sha256(kernel.version.encode())
    digest.update(",".join(MODULES).encode())
    for name in sorted(SCRIPTS):
        digest.update(name.encode() + b"\0" + script(name))
    digest.update(hashlib.sha256(BUSYBOX.read_bytes()).digest())
    out = cache / f"test-guest-{digest.hexdigest()[:16]}"
    initrd, vmlinuz = out / "initrd.img", out / "vmlinuz"
    if not (initrd.exists() and vmlinuz.exists()):
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(initrd, build_initramfs(kernel))
        _atomic_write(vmlinuz, kernel.vmlinuz.read_bytes())
    return GuestImage(kernel=str(vmlinuz), initrd=str(initrd), kernel_version=kernel.version)


def build_test_disk(cache_dir: str | os.PathLike[str], *, size: str = "64M") -> str:
    """A small, empty qcow2 data disk (the test "image"), cached."""
    path = Path(cache_dir).resolve() / f"test-disk-{size}.qcow2"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        done = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp), size],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise GuestImageError(f"qemu-img create: {done.stderr.strip()}")
        tmp.replace(path)
    return str(path)
