"""The files behind ``local`` PersistentVolumes on this host.

A PV provisioned by the local-storage controller
(:mod:`kubevisor.controllers.localstorage`) names its disk by
``spec.csi.volumeHandle``; the node agent keeps it as
``<data-dir>/volumes/<volumeHandle>.qcow2``. :func:`ensure_volume` creates
that file (an empty qcow2 of the PV's capacity, written under a temporary
name and renamed into place, so a crash leaves no half-made disk) the first
time a VM attaches it, and returns it as it is afterwards: the data lives
as long as the PV. :func:`collect_volumes` deletes the files whose PV is
gone (reclaim policy Delete). Called by the node agent's VM workers.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from kubevisor.api.quantity import parse_quantity
from kubevisor.runtime.qemu import disks

JSON = dict[str, Any]

VOLUMES_DIR = "volumes"
SUFFIX = ".qcow2"
PART = ".part"
#: A temporary file older than this is a leftover of a crash.
STALE_SECONDS = 600.0
#: What a handle may look like: it becomes a file name.
_HANDLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_SECTOR = 512
_locks: dict[Path, asyncio.Lock] = {}


class VolumeError(Exception):
    """A PV this host cannot keep a file for (no handle, no capacity)."""


def volume_handle(pv: JSON) -> str:
    """The PV's ``spec.csi.volumeHandle``, checked to be a safe file name."""
    handle = str(((pv.get("spec") or {}).get("csi") or {}).get("volumeHandle") or "")
    name = (pv.get("metadata") or {}).get("name", "")
    if not handle:
        raise VolumeError(f"PersistentVolume {name!r} has no spec.csi.volumeHandle")
    if not _HANDLE.match(handle) or ".." in handle:
        raise VolumeError(f"PersistentVolume {name!r}: volumeHandle {handle!r} is not a "
                          "plain file name")
    return handle


def capacity_bytes(pv: JSON) -> int:
    """``spec.capacity.storage`` in bytes, rounded up to a whole sector."""
    name = (pv.get("metadata") or {}).get("name", "")
    raw = ((pv.get("spec") or {}).get("capacity") or {}).get("storage")
    if raw in (None, ""):
        raise VolumeError(f"PersistentVolume {name!r} has no spec.capacity.storage")
    try:
        size = parse_quantity(raw)
    except (ValueError, ArithmeticError) as exc:
        raise VolumeError(f"PersistentVolume {name!r}: bad capacity {raw!r}") from exc
    if size <= 0:
        raise VolumeError(f"PersistentVolume {name!r}: capacity {raw!r} is not positive")
    return math.ceil(size / _SECTOR) * _SECTOR


def volume_path(data_dir: Path, handle: str) -> Path:
    return Path(data_dir) / VOLUMES_DIR / f"{handle}{SUFFIX}"


async def ensure_volume(data_dir: Path, pv: JSON) -> Path:
    """The qcow2 file of ``pv``, created empty with the PV's capacity when
    missing. An existing file is returned untouched (never resized or
    re-created). Raises :class:`VolumeError` for a PV without a usable
    handle or capacity, :class:`~kubevisor.runtime.qemu.errors.DiskError`
    when qemu-img fails (nothing is left behind then)."""
    handle = volume_handle(pv)
    path = volume_path(data_dir, handle)
    if path.exists():
        return path
    size = capacity_bytes(pv)
    async with _locks.setdefault(path, asyncio.Lock()):
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Made under a name of its own, then linked into place: link never
        # replaces, so another process making the same volume at the same
        # time cannot swap a disk under a VM that already opened it.
        part = path.with_name(f".{handle}.{secrets.token_hex(4)}{SUFFIX}{PART}")
        try:
            await disks.create(str(part), size, fmt="qcow2")
            try:
                os.link(part, path)
            except FileExistsError:
                pass  # made by someone else meanwhile: theirs is the volume
        finally:
            part.unlink(missing_ok=True)
            _locks.pop(path, None)
    return path


async def collect_volumes(data_dir: Path, live_handles: set[str]) -> list[Path]:
    """Delete every volume file whose handle is not in ``live_handles``
    (the PVs that still exist; the caller includes volumes attached to
    running VMs) and return the deleted paths. Temporary files are left
    alone unless they are stale leftovers of a crash."""
    return await asyncio.to_thread(_collect, Path(data_dir), set(live_handles))


def _collect(data_dir: Path, live: set[str]) -> list[Path]:
    root = data_dir / VOLUMES_DIR
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for path in sorted(root.iterdir()):
        name = path.name
        if path.is_symlink() or not path.is_file():
            continue
        if name.startswith("."):
            # ".<handle>.<random>.qcow2.part" (and qemu-img's ".….tmp" inside it)
            if not (name.endswith(PART) or name.endswith(PART + ".tmp")):
                continue
            try:
                if now - path.stat().st_mtime < STALE_SECONDS:
                    continue
            except FileNotFoundError:
                continue
        elif not name.endswith(SUFFIX) or name[: -len(SUFFIX)] in live:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
