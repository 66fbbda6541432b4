"""qemu-img wrappers: linked clones, resize, info, full copies, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubevisor.runtime.qemu import disks
from kubevisor.runtime.qemu.errors import DiskError
from tests.runtime.qemu.conftest import needs_qemu

pytestmark = needs_qemu
MiB = 1 << 20


async def test_linked_clone_is_a_thin_overlay_grown_to_the_asked_size(tmp_path: Path) -> None:
    base = await disks.create(str(tmp_path / "base.qcow2"), 64 * MiB)
    assert (base.format, base.virtual_size, base.backing_file) == ("qcow2", 64 * MiB, "")
    clone = await disks.linked_clone(base.path, str(tmp_path / "vm.qcow2"), size=256 * MiB)
    assert clone.format == "qcow2" and clone.virtual_size == 256 * MiB
    assert clone.backing_file == str(tmp_path / "base.qcow2")
    assert os.path.getsize(clone.path) < 2 * MiB
    # a smaller size never shrinks the base's size
    small = await disks.linked_clone(base.path, str(tmp_path / "small.qcow2"), size=MiB)
    assert small.virtual_size == 64 * MiB


async def test_raw_base_resize_and_full_copy(tmp_path: Path) -> None:
    raw = tmp_path / "base.raw"
    with raw.open("wb") as out:
        out.truncate(32 * MiB)
        out.write(b"kubevisor" * 1000)
    clone = await disks.linked_clone(str(raw), str(tmp_path / "vm.qcow2"))
    assert clone.virtual_size == 32 * MiB
    grown = await disks.resize(clone.path, 96 * MiB)
    assert grown.virtual_size == 96 * MiB
    assert (await disks.resize(clone.path, 10 * MiB)).virtual_size == 96 * MiB
    copy = await disks.full_copy(str(raw), str(tmp_path / "copy.qcow2"))
    assert copy.backing_file == "" and copy.virtual_size == 32 * MiB


async def test_failures_raise_disk_errors_and_leave_no_file(tmp_path: Path) -> None:
    with pytest.raises(DiskError, match="info"):
        await disks.info(str(tmp_path / "missing.qcow2"))
    with pytest.raises(DiskError):
        await disks.linked_clone(str(tmp_path / "missing.qcow2"), str(tmp_path / "vm.qcow2"))
    with pytest.raises(DiskError):
        await disks.create(str(tmp_path / "bad.qcow2"), -1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
