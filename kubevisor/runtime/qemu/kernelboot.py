"""Kernel-boot images (like KubeVirt's ``kernelBoot``): a disk image whose
whole disk is a FAT filesystem carrying its own kernel, initramfs and
command line, for guests that have no bootloader. The layout::

    /kubevisor/boot.json   {"kernel": "/kubevisor/vmlinuz", "initrd": "/kubevisor/initrd.img",
                            "cmdline": "console=ttyS0 ...", "osInfo": {"id": ..., "type": ...}}
    /kubevisor/vmlinuz     /kubevisor/initrd.img     /kubevisor/cmdline

``boot.json`` is the marker; ``kernel`` is required, ``initrd`` optional,
``cmdline`` falls back to the ``/kubevisor/cmdline`` file. Such a VM boots
with QEMU direct boot (``-kernel``/``-initrd``/``-append``) from the
extracted files while the image's linked clone is still its boot disk.

:func:`write_image` makes one (blocking; the test guest's builder calls
it); ``kubevisor image add`` calls :func:`probe` to mark the image object;
the node agent calls :func:`extract` into :func:`cache_dir` (one directory
per image digest) before it starts such a VM. Everything is read with
mtools, without mounting: a raw image directly, a qcow2 one through a raw
copy of just its FAT filesystem (``qemu-img dd``). An image that is not
FAT, or FAT without ``boot.json`` (a real disk with a partition table, a
blank disk), is not a kernel-boot image: ``None``, not an error. A FAT
image whose ``boot.json`` is malformed or names missing files raises
:class:`~kubevisor.runtime.qemu.errors.DiskError`, as do failing tools.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubevisor.runtime.qemu.disks import _qemu_img
from kubevisor.runtime.qemu.errors import DiskError
from kubevisor.runtime.qemu.types import DirectBoot

#: The (Cluster)VirtualMachineImage annotation ``image add`` sets to
#: :data:`BOOT_KERNEL` on a kernel-boot image.
BOOT_ANNOTATION = "vmoperator.kubevisor.io/boot"
BOOT_KERNEL = "kernel"

DIR = "/kubevisor"
BOOT_JSON = f"{DIR}/boot.json"
CMDLINE = f"{DIR}/cmdline"
LABEL = "KUBEVISOR"
#: A qcow2 image's FAT filesystem is copied out to be read; larger ones are refused.
MAX_FS_BYTES = 1 << 30
_MAX_JSON = 64 << 10
#: What :func:`extract` leaves in its destination (names on the host are fixed,
#: never taken from the image).
KERNEL_FILE, INITRD_FILE, RESULT_FILE = "vmlinuz", "initrd.img", "direct-boot.json"


@dataclass(frozen=True, slots=True)
class BootInfo:
    """What an image's ``boot.json`` says (paths inside its filesystem)."""

    kernel: str
    initrd: str = ""
    cmdline: str = ""
    os_info: Mapping[str, str] = field(default_factory=dict)


def cache_dir(root: Path, digest: str) -> Path:
    """Where the node agent extracts the image of ``digest`` (``sha256:<hex>``)
    under ``root`` (e.g. ``<data-dir>/images/vm``): ``root/kernels/<hex>``."""
    hex_ = digest.removeprefix("sha256:")
    if len(hex_) != 64 or any(c not in "0123456789abcdef" for c in hex_):
        raise DiskError(f"not a sha256 digest: {digest!r}")
    return root / "kernels" / hex_


# -- reading ---------------------------------------------------------------------

def fat_size(boot_sector: bytes) -> int | None:
    """The size in bytes of the FAT filesystem whose boot sector is
    ``boot_sector`` (the disk's first 512 bytes), or None when it is not
    one (an MBR or GPT disk, zeros, qcow2 header bytes...)."""
    if len(boot_sector) < 512 or boot_sector[510:512] != b"\x55\xaa" or \
            boot_sector[0] not in (0xEB, 0xE9):
        return None
    sector, per_cluster, reserved, fats = struct.unpack_from("<HBHB", boot_sector, 11)
    total16, = struct.unpack_from("<H", boot_sector, 19)
    total32, = struct.unpack_from("<I", boot_sector, 32)
    if sector not in (512, 1024, 2048, 4096) or per_cluster == 0 or \
            per_cluster & (per_cluster - 1) or reserved == 0 or fats == 0:
        return None
    total = total16 or total32
    return total * sector if total else None


async def probe(image_path: str | os.PathLike[str], fmt: str) -> BootInfo | None:
    """``boot.json`` of a kernel-boot image; None for any other image."""
    with tempfile.TemporaryDirectory(prefix="kubevisor-kernelboot-") as tmp:
        view = await _fat_view(Path(image_path), fmt, Path(tmp))
        return None if view is None else await _boot_info(view, label=str(image_path))


async def extract(image_path: str | os.PathLike[str], fmt: str,
                  dest_dir: str | os.PathLike[str]) -> DirectBoot | None:
    """Copy a kernel-boot image's kernel and initramfs into ``dest_dir``
    and return how to boot them; None when the image is not one. The
    directory appears whole or not at all (built beside it, renamed into
    place); when it is already there the image is not read again, so
    ``dest_dir`` must be specific to the image's content (:func:`cache_dir`)."""
    dest = Path(dest_dir)
    done = _read_result(dest)
    if done is not None:
        return done
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as exc:
        raise DiskError(f"{dest}: {exc.strerror or exc}") from exc
    try:
        scratch = work / "scratch"
        scratch.mkdir()
        out = work / "out"
        out.mkdir()
        view = await _fat_view(Path(image_path), fmt, scratch)
        info = None if view is None else await _boot_info(view, label=str(image_path))
        if view is None or info is None:
            return None
        await _mtools("mcopy", "-n", "-i", str(view), f"::{info.kernel}", str(out / KERNEL_FILE),
                      what=f"{image_path}: {info.kernel}")
        if info.initrd:
            await _mtools("mcopy", "-n", "-i", str(view), f"::{info.initrd}",
                          str(out / INITRD_FILE), what=f"{image_path}: {info.initrd}")
        boot = DirectBoot(kernel=str(dest / KERNEL_FILE),
                          initrd=str(dest / INITRD_FILE) if info.initrd else "",
                          append=info.cmdline)
        (out / RESULT_FILE).write_text(json.dumps(
            {"kernel": boot.kernel, "initrd": boot.initrd, "append": boot.append}))
        try:
            os.rename(out, dest)
        except OSError:  # another extraction won the race: use its result
            theirs = _read_result(dest)
            if theirs is not None:
                return theirs
            os.rename(dest, work / "stale")  # not ours, not whole: replace it
            os.rename(out, dest)
        return boot
    except OSError as exc:
        raise DiskError(f"{image_path}: extracting its kernel into {dest}: "
                        f"{exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _read_result(dest: Path) -> DirectBoot | None:
    try:
        data = json.loads((dest / RESULT_FILE).read_text())
        boot = DirectBoot(kernel=str(data["kernel"]), initrd=str(data["initrd"]),
                          append=str(data["append"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not os.path.isfile(boot.kernel) or (boot.initrd and not os.path.isfile(boot.initrd)):
        return None
    return boot


async def _fat_view(image: Path, fmt: str, scratch: Path) -> Path | None:
    """A raw file whose first byte is the FAT boot sector: the image itself
    when raw, else a copy of its filesystem in ``scratch``; None when the
    image does not start with a FAT filesystem."""
    if fmt == "raw":
        try:
            with open(image, "rb") as disk:
                head = disk.read(512)
        except OSError as exc:
            raise DiskError(f"{image}: {exc.strerror or exc}") from exc
        return image if fat_size(head) is not None else None
    if fmt != "qcow2":
        raise DiskError(f"{image}: a {fmt} image; kernel boot reads qcow2 and raw")
    view = scratch / "fat.raw"
    block = 1 << 16
    await _qemu_img(["dd", "-f", fmt, "-O", "raw", f"bs={block}", "count=1",
                     f"if={image}", f"of={view}"], timeout=120.0)
    size = fat_size(_read(view, 512))
    if size is None:
        return None
    if size > MAX_FS_BYTES:
        raise DiskError(f"{image}: a FAT filesystem of {size} bytes; kernel boot reads at "
                        f"most {MAX_FS_BYTES} bytes from a {fmt} image")
    if size > block:
        view.unlink()
        await _qemu_img(["dd", "-f", fmt, "-O", "raw", f"bs={block}",
                         f"count={-(-size // block)}", f"if={image}", f"of={view}"], timeout=600.0)
    return view


def _read(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except OSError as exc:
        raise DiskError(f"{path}: {exc.strerror or exc}") from exc


async def _boot_info(view: Path, *, label: str) -> BootInfo | None:
    """Parse ``boot.json`` of the FAT filesystem in ``view`` (of the image
    ``label``); None without one."""
    text = await _mtype(view, BOOT_JSON)
    if text is None:
        return None
    where = f"{label}: {BOOT_JSON}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DiskError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("kernel"), str) or not data["kernel"]:
        raise DiskError(f"{where}: needs a \"kernel\" path")
    for key in ("initrd", "cmdline"):
        if not isinstance(data.get(key, ""), str):
            raise DiskError(f"{where}: \"{key}\" must be a string")
    os_info = data.get("osInfo") or {}
    if not isinstance(os_info, dict) or not all(isinstance(v, str) for v in os_info.values()):
        raise DiskError(f"{where}: \"osInfo\" must map names to strings")
    cmdline = data.get("cmdline")
    if cmdline is None:
        cmdline = (await _mtype(view, CMDLINE) or "")
    info = BootInfo(kernel=_inside(data["kernel"]), initrd=_inside(data.get("initrd", "")),
                    cmdline=" ".join(cmdline.split()),
                    os_info={str(k): v for k, v in os_info.items() if v})
    for path in (info.kernel, info.initrd):
        if path and not await _exists(view, path):
            raise DiskError(f"{where} names {path}, which the image does not hold")
    return info


def _inside(path: str) -> str:
    """A path of the image's filesystem, absolute (``vmlinuz`` is ``/kubevisor/vmlinuz``)."""
    if not path:
        return ""
    return path if path.startswith("/") else f"{DIR}/{path}"


async def _mtype(view: Path, path: str) -> str | None:
    """A text file of the filesystem; None when it is absent (or the
    filesystem is one mtools cannot read)."""
    code, out, _ = await _run("mtype", "-i", str(view), f"::{path}")
    if code != 0:
        return None
    if len(out) > _MAX_JSON:
        raise DiskError(f"{view}: {path} is larger than {_MAX_JSON} bytes")
    return out.decode(errors="replace")


async def _exists(view: Path, path: str) -> bool:
    code, _, _ = await _run("mdir", "-b", "-i", str(view), f"::{path}")
    return code == 0


async def _mtools(*argv: str, what: str) -> None:
    code, out, err = await _run(*argv)
    if code != 0:
        text = (err or out).decode(errors="replace").strip()
        raise DiskError(f"{what}: {argv[0]}: {text}")


async def _run(*argv: str) -> tuple[int, bytes, bytes]:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
    except OSError as exc:
        raise DiskError(f"{argv[0]}: {exc} (Debian package mtools)") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120.0)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise DiskError(f"{argv[0]} took more than 120s") from exc
    return proc.returncode or 0, out, err


# -- writing ---------------------------------------------------------------------

def write_image(path: str | os.PathLike[str], *, kernel: str | os.PathLike[str],
                initrd: str | os.PathLike[str] | None = None, cmdline: str = "",
                os_info: Mapping[str, str] | None = None, epoch: int = 946684800) -> None:
    """Write a raw kernel-boot image to ``path`` (replaced atomically):
    a FAT filesystem as large as the files need, built with
    ``mkfs.vfat`` and ``mcopy`` (no mount, no root). Deterministic: the
    same inputs make the same bytes (fixed volume id, file times at
    ``epoch``). Blocking; raises DiskError."""
    target = Path(path)
    files = {f"{DIR}/vmlinuz": Path(kernel)}
    if initrd:
        files[f"{DIR}/initrd.img"] = Path(initrd)
    spec = {"kernel": f"{DIR}/vmlinuz", "initrd": f"{DIR}/initrd.img" if initrd else "",
            "cmdline": cmdline, "osInfo": dict(os_info or {})}
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}
    try:
        payload = sum(source.stat().st_size for source in files.values())
        kib = ((payload * 5 // 4 + (2 << 20)) >> 20 << 10) + 1024  # 25% + 2-3 MiB of room
        with tempfile.TemporaryDirectory(prefix="kubevisor-kernelboot-") as staging:
            small = {f"{DIR}/boot.json": json.dumps(spec, indent=2) + "\n",
                     CMDLINE: cmdline + "\n"}
            for name, text in small.items():
                file = Path(staging) / name.rsplit("/", 1)[1]
                file.write_text(text)
                files[name] = file
            tmp.unlink(missing_ok=True)
            _check(["mkfs.vfat", "--invariant", "--mbr=n", "-i", "4b564d31", "-n", LABEL,
                    "-C", str(tmp), str(kib)], env)
            _check(["mmd", "-i", str(tmp), f"::{DIR}"], env)
            for name, source in sorted(files.items()):
                _check(["mcopy", "-i", str(tmp), str(source), f"::{name}"], env)
        os.replace(tmp, target)
    except OSError as exc:
        raise DiskError(f"{target}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _check(argv: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
    except OSError as exc:
        raise DiskError(f"{argv[0]}: {exc} (Debian packages dosfstools, mtools)") from exc
    if done.returncode != 0:
        raise DiskError(f"{argv[0]}: {(done.stderr or done.stdout).strip()}")
