"""The files behind local PersistentVolumes, made by real qemu-img: created
once with the PV's capacity, kept as they are, collected when the PV is gone."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kubevisor.node import vmvolumes
from kubevisor.runtime.qemu import disks
from tests.runtime.qemu.conftest import needs_qemu

pytestmark = needs_qemu
MiB = 1 << 20


def pv(handle: str, storage: str = "64Mi") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": handle},
            "spec": {"capacity": {"storage": storage},
                     "csi": {"driver": "local.kubevisor.io", "volumeHandle": handle}}}


async def test_ensure_volume_creates_a_qcow2_of_the_capacity_once(tmp_path: Path) -> None:
    path = await vmvolumes.ensure_volume(tmp_path, pv("pvc-one", "64Mi"))
    assert path == tmp_path / "volumes" / "pvc-one.qcow2"
    info = await disks.info(str(path))
    assert (info.format, info.virtual_size) == ("qcow2", 64 * MiB)
    # data written to it survives a second ensure (never re-created or resized)
    before = path.stat().st_ino
    again = await vmvolumes.ensure_volume(tmp_path, pv("pvc-one", "128Mi"))
    assert again == path and path.stat().st_ino == before
    assert (await disks.info(str(path))).virtual_size == 64 * MiB
    assert [p.name for p in (tmp_path / "volumes").iterdir()] == ["pvc-one.qcow2"]


async def test_decimal_capacity_rounds_up_to_a_sector(tmp_path: Path) -> None:
    path = await vmvolumes.ensure_volume(tmp_path, pv("pvc-dec", "1M"))
    assert (await disks.info(str(path))).virtual_size == 1_000_448  # 1e6 up to 512


async def test_concurrent_ensures_make_one_file(tmp_path: Path) -> None:
    paths = await asyncio.gather(*(vmvolumes.ensure_volume(tmp_path, pv("pvc-c", "8Mi"))
                                   for _ in range(3)), return_exceptions=True)
    good = [p for p in paths if isinstance(p, Path)]
    assert good and all(p == tmp_path / "volumes" / "pvc-c.qcow2" for p in good)
    assert sorted(p.name for p in (tmp_path / "volumes").iterdir()) == ["pvc-c.qcow2"]
    assert (await disks.info(str(good[0]))).virtual_size == 8 * MiB


@pytest.mark.parametrize("bad", [
    {"spec": {"capacity": {"storage": "1Gi"}}},
    {"spec": {"capacity": {"storage": "1Gi"}, "csi": {"volumeHandle": "../etc"}}},
    {"spec": {"capacity": {"storage": "1Gi"}, "csi": {"volumeHandle": "a/b"}}},
    {"spec": {"csi": {"volumeHandle": "pvc-x"}}},
    {"spec": {"capacity": {"storage": "lots"}, "csi": {"volumeHandle": "pvc-x"}}},
    {"spec": {"capacity": {"storage": "0"}, "csi": {"volumeHandle": "pvc-x"}}},
])
async def test_unusable_pvs_are_refused_and_leave_nothing(tmp_path: Path,
                                                          bad: dict[str, Any]) -> None:
    with pytest.raises(vmvolumes.VolumeError):
        await vmvolumes.ensure_volume(tmp_path, {"metadata": {"name": "x"}, **bad})
    assert not (tmp_path / "volumes").exists() or not any((tmp_path / "volumes").iterdir())
    assert not (tmp_path.parent / "etc.qcow2").exists()


async def test_collect_deletes_files_of_gone_pvs_only(tmp_path: Path) -> None:
    assert await vmvolumes.collect_volumes(tmp_path, set()) == []  # no directory yet
    for handle in ("pvc-a", "pvc-b", "pvc-c"):
        await vmvolumes.ensure_volume(tmp_path, pv(handle, "1Mi"))
    root = tmp_path / "volumes"
    (root / ".pvc-d.qcow2.tmp").write_bytes(b"")  # a creation in flight
    (root / "notes.txt").write_text("not a volume")
    removed = await vmvolumes.collect_volumes(tmp_path, {"pvc-b"})
    assert sorted(p.name for p in removed) == ["pvc-a.qcow2", "pvc-c.qcow2"]
    assert sorted(p.name for p in root.iterdir()) == [".pvc-d.qcow2.tmp", "notes.txt",
                                                      "pvc-b.qcow2"]
    assert await vmvolumes.collect_volumes(tmp_path, {"pvc-b"}) == []


async def test_collect_removes_stale_partial_files_only(tmp_path: Path) -> None:
    root = tmp_path / "volumes"
    root.mkdir()
    fresh = root / ".pvc-e.0a1b2c3d.qcow2.part"
    stale = root / ".pvc-f.0a1b2c3d.qcow2.part"
    stale_tmp = root / ".pvc-f.0a1b2c3d.qcow2.part.tmp"
    for p in (fresh, stale, stale_tmp):
        p.write_bytes(b"")
    old = time.time() - vmvolumes.STALE_SECONDS - 5
    for p in (stale, stale_tmp):
        os.utime(p, (old, old))
    removed = await vmvolumes.collect_volumes(tmp_path, set())
    assert sorted(removed) == sorted([stale, stale_tmp])
    assert [p.name for p in root.iterdir()] == [fresh.name]
