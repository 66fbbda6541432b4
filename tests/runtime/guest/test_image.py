"""The test guest image: built from Debian's kernel package and busybox,
cached (a second build is a lookup), with the /init, the scripts and the
virtio modules (dependencies first) in its initramfs."""

from __future__ import annotations

import gzip
import shutil
import time

import pytest

from kubevisor.runtime.guest import build_test_disk, build_test_guest
from kubevisor.runtime.guest.cpio import CpioWriter
from tests.runtime.qemu.guestvm import CACHE

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("busybox") is None,
                                reason="needs dpkg-deb and busybox-static")


def cpio_names(data: bytes) -> dict[str, bytes]:
    """name -> content of a newc archive (read independently of CpioWriter)."""
    entries, pos = {}, 0
    while True:
        header = data[pos:pos + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = data[pos:pos + size]
        pos += size + (-size % 4)


def test_build_is_cached_and_complete() -> None:
    guest = build_test_guest(CACHE)
    started = time.monotonic()
    again = build_test_guest(CACHE)
    assert again == guest and time.monotonic() - started < 2.0
    assert guest.kernel_version.endswith("-amd64")
    with open(guest.kernel, "rb") as kernel:
        assert kernel.read(0x210)[0x202:0x206] == b"HdrS"  # a bzImage
    with open(guest.initrd, "rb") as initrd:
        files = cpio_names(gzip.decompress(initrd.read()))
    assert files["init"].startswith(b"#!/bin/sh")
    assert files["bin/sh"] == b"busybox" and len(files["bin/busybox"]) > 500_000
    for name in ("etc/kubevisor/yaml.awk", "etc/kubevisor/cloudinit.awk", "etc/acpi/PWRF/00000080"):
        assert name in files
    order = files["etc/modules"].decode().split()
    for module in ("virtio_pci", "virtio_blk", "virtio_net", "isofs", "vfat", "button", "evdev"):
        assert f"lib/modules/{module}.ko" in files
    assert order.index("virtio") < order.index("virtio_pci") < order.index("virtio_blk")
    assert order.index("fat") < order.index("vfat")
    assert "console=ttyS0" in guest.append


def test_test_disk_is_a_small_qcow2(tmp_path: object) -> None:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-utils is not installed")
    path = build_test_disk(CACHE)
    with open(path, "rb") as disk:
        assert disk.read(4) == b"QFI\xfb"
    assert build_test_disk(CACHE) == path


def test_cpio_writer_round_trip() -> None:
    import io
    out = io.BytesIO()
    cpio = CpioWriter(out)
    cpio.file("a/b/c.txt", b"hello")
    cpio.symlink("a/link", "b/c.txt")
    cpio.close()
    files = cpio_names(out.getvalue())
    assert files == {"a": b"", "a/b": b"", "a/b/c.txt": b"hello", "a/link": b"b/c.txt"}
