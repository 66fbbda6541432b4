"""The test guest as a kernel-boot disk image: a raw disk that is one FAT
filesystem holding the guest's kernel, initramfs, command line and
boot.json (read back with mtools, independently of the reader under
test), built once and found again by a lookup."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kubevisor.runtime.guest import build_test_disk_image, build_test_guest
from kubevisor.runtime.qemu import library
from tests.runtime.qemu.guestvm import CACHE

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("dpkg-deb", "busybox", "mkfs.vfat", "mtype")),
    reason="needs dpkg-deb, busybox-static, dosfstools and mtools")


def mtype(image: str, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", image, f"::{path}"], capture_output=True,
                          check=True).stdout


def test_the_image_holds_the_guest_and_its_boot_json() -> None:
    guest = build_test_guest(CACHE)
    path = build_test_disk_image(CACHE)
    assert Path(path).name.startswith("test-disk-image-") and path.endswith(".raw")
    listing = subprocess.run(["mdir", "-b", "-i", path, "::/kubevisor"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert sorted(listing) == sorted(f"::/kubevisor/{name}" for name in
                                     ("boot.json", "cmdline", "initrd.img", "vmlinuz"))
    boot = json.loads(mtype(path, "/kubevisor/boot.json"))
    assert boot == {"kernel": "/kubevisor/vmlinuz", "initrd": "/kubevisor/initrd.img",
                    "cmdline": guest.append, "osInfo": {"id": "debian", "type": "linux"}}
    assert "console=ttyS0" in boot["cmdline"]
    assert mtype(path, "/kubevisor/cmdline").decode().strip() == guest.append
    assert mtype(path, "/kubevisor/vmlinuz") == Path(guest.kernel).read_bytes()
    assert mtype(path, "/kubevisor/initrd.img") == Path(guest.initrd).read_bytes()

    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", path],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "raw"
    payload = Path(guest.kernel).stat().st_size + Path(guest.initrd).stat().st_size
    assert payload < info["virtual-size"] < payload * 2 + (8 << 20)  # room, but not a lot
    head = Path(path).read_bytes()[:1 << 20]
    assert head[510:512] == b"\x55\xaa" and b"KUBEVISOR" in head[:512]
    assert library.partition_types(head) == [] and library.firmware_of(head) == "bios"


def test_a_second_build_is_a_lookup() -> None:
    path = build_test_disk_image(CACHE)
    mtime = Path(path).stat().st_mtime_ns
    started = time.monotonic()
    assert build_test_disk_image(CACHE) == path
    assert time.monotonic() - started < 2.0
    assert Path(path).stat().st_mtime_ns == mtime
