"""Disk files with ``qemu-img``: qcow2 linked clones of a base image
(``-b base -F fmt``), resize (bootDiskCapacity), full copies (the
benchmark's baseline) and ``info`` as JSON (format, virtual size, backing
file). Used by the node agent for VM disks and by the image library.
Failures become :class:`~kubevisor.runtime.qemu.errors.DiskError`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubevisor.runtime.qemu.errors import DiskError

QEMU_IMG = "qemu-img"


@dataclass(frozen=True, slots=True)
class DiskInfo:
    path: str
    format: str
    virtual_size: int
    actual_size: int
    backing_file: str = ""


async def _qemu_img(args: Sequence[str], *, timeout: float = 600.0) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            QEMU_IMG, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise DiskError(f"{QEMU_IMG}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise DiskError(f"{QEMU_IMG} {args[0]} took more than {timeout:g}s") from exc
    if proc.returncode != 0:
        raise DiskError(f"{QEMU_IMG} {args[0]}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def info(path: str) -> DiskInfo:
    """Format, virtual size, allocated size and backing file of ``path``."""
    data = json.loads(await _qemu_img(["info", "--output=json", "-U", path]))
    return DiskInfo(path=path, format=data["format"], virtual_size=int(data["virtual-size"]),
                    actual_size=int(data.get("actual-size", 0)),
                    backing_file=data.get("backing-filename", ""))


async def create(path: str, size: int, *, fmt: str = "qcow2") -> DiskInfo:
    """An empty disk of ``size`` bytes (a PVC of the ``local`` storage class)."""
    await _replace_on_success(path, lambda tmp: ["create", "-q", "-f", fmt, tmp, str(size)])
    return await info(path)


async def linked_clone(base: str, path: str, *, size: int | None = None) -> DiskInfo:
    """A qcow2 overlay of ``base`` (which must never change afterwards),
    grown to ``size`` bytes when given and larger than the base."""
    base_info = await info(base)
    want = max(size or 0, base_info.virtual_size)
    await _replace_on_success(path, lambda tmp: [
        "create", "-q", "-f", "qcow2", "-b", os.path.abspath(base), "-F", base_info.format,
        tmp, str(want)])
    return await info(path)


async def full_copy(base: str, path: str, *, fmt: str = "qcow2") -> DiskInfo:
    """An independent copy of ``base`` (what a linked clone saves)."""
    await _replace_on_success(path, lambda tmp: ["convert", "-q", "-O", fmt, base, tmp])
    return await info(path)


async def resize(path: str, size: int) -> DiskInfo:
    """Grow ``path`` to ``size`` bytes; never shrinks (a smaller size is a no-op)."""
    current = await info(path)
    if size > current.virtual_size:
        await _qemu_img(["resize", "-q", "-f", current.format, path, str(size)])
    return await info(path)


async def _replace_on_success(path: str, args: Callable[[str], list[str]]) -> None:
    """Run qemu-img on a temporary name beside ``path`` and rename it into
    place, so a failure leaves no half-written disk."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp")
    try:
        await _qemu_img(args(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
