"""The test guest as a disk image: a raw kernel-boot image (see
:mod:`~kubevisor.runtime.qemu.kernelboot`) whose FAT filesystem holds the
test guest's kernel, initramfs and command line, so it can be imported
with ``kubevisor image add`` and booted as a VirtualMachine's image
although it has no bootloader.

Called by tests, benchmarks and the CLI. Built in seconds from
:func:`~kubevisor.runtime.guest.image.build_test_guest` and cached as
``<cache_dir>/test-disk-image-<key>.raw``, the key hashing the guest's
files and command line; the bytes are deterministic, so every build of
the same guest has the same digest in the image library.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from kubevisor.runtime.guest.image import build_test_guest
from kubevisor.runtime.qemu import kernelboot

#: What the image says of itself (``status.osInfo`` of its image object).
OS_INFO = {"id": "debian", "type": "linux"}
_LAYOUT = "kernelboot-1"  # bump when the image's layout changes


def build_test_disk_image(cache_dir: str | os.PathLike[str]) -> str:
    """Build (or find in ``cache_dir``) the raw kernel-boot image of the
    test guest; returns its path. Raises GuestImageError or DiskError."""
    guest = build_test_guest(cache_dir)
    cache = Path(cache_dir).resolve()
    digest = hashlib.sha256(_LAYOUT.encode() + b"\0" + guest.append.encode())
    for part in (guest.kernel, guest.initrd):
        digest.update(b"\0" + Path(part).name.encode() + b"\0")
        digest.update(hashlib.sha256(Path(part).read_bytes()).digest())
    path = cache / f"test-disk-image-{digest.hexdigest()[:16]}.raw"
    if path.exists():
        return str(path)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers build it once
        if not path.exists():
            kernelboot.write_image(path, kernel=guest.kernel, initrd=guest.initrd,
                                   cmdline=guest.append, os_info=OS_INFO)
    return str(path)
