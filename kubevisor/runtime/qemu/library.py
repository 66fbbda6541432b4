"""The VM image library on a host: disk images stored once, by content,
as ``<root>/sha256/<hex>`` (``root`` is ``<data-dir>/images/vm``), and the
firmware they boot with, read from their partition table.

``kubevisor image add`` imports files with :func:`import_file` (the
sha256 computed while copying, sparse zero runs kept sparse, a repeated
import of an unchanged file or of known content storing nothing new) and
:func:`detect_firmware`; the node agent finds a stored image with
:func:`stored_path` from the digest the image object carries in the
:data:`DIGEST_ANNOTATION`. Failures become
:class:`~kubevisor.runtime.qemu.errors.DiskError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubevisor.runtime.qemu.disks import _qemu_img
from kubevisor.runtime.qemu.errors import DiskError

#: The annotation on a (Cluster)VirtualMachineImage naming its stored file
#: (``sha256:<hex>``); a label value cannot hold 64 hex characters.
DIGEST_ANNOTATION = "vmoperator.kubevisor.io/image-digest"
#: A label with the digest's first 16 hex characters, for selectors.
DIGEST_LABEL = "vmoperator.kubevisor.io/image-digest-prefix"

CHUNK = 1 << 20
_INDEX = "sources.json"

ESP_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
BIOS_BOOT_GUID = uuid.UUID("21686148-6449-6e6f-744e-656564454649")

#: ``progress(done_bytes, total_bytes)`` while a file is read.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class StoredImage:
    digest: str  # "sha256:<hex>"
    path: Path
    size: int
    #: False when the content was already in the library (nothing stored).
    added: bool


def stored_path(root: Path, digest: str) -> Path:
    """Where content ``sha256:<hex>`` (or a bare hex) lives under ``root``."""
    hex_ = digest.removeprefix("sha256:")
    if len(hex_) != 64 or any(c not in "0123456789abcdef" for c in hex_):
        raise DiskError(f"not a sha256 digest: {digest!r}")
    return root / "sha256" / hex_


def download_dir(root: Path) -> Path:
    """Where downloads land before :func:`adopt_file` (same filesystem)."""
    path = root / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def adopt_file(path: Path, root: Path) -> StoredImage:
    """Move ``path`` (a download inside ``root``) into the library under
    its sha256: hashed, renamed, never copied; dropped if already stored."""
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
        size = path.stat().st_size
        blobs = root / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        final = blobs / hasher.hexdigest()
        if final.is_file():
            path.unlink()
            return StoredImage(digest="sha256:" + hasher.hexdigest(), path=final, size=size,
                               added=False)
        os.chmod(path, 0o444)
        os.replace(path, final)
    except OSError as exc:
        raise DiskError(f"{path}: {exc.strerror or exc}") from exc
    return StoredImage(digest="sha256:" + hasher.hexdigest(), path=final, size=size, added=True)


def import_file(source: Path, root: Path, *, progress: Progress | None = None) -> StoredImage:
    """Copy ``source`` into the library under its sha256 (blocking; run it
    in a thread from async code). A source already imported unchanged
    (same path, inode, size, mtime) is not read again; new content equal
    to stored content is dropped after hashing."""
    try:
        st = source.stat()
    except OSError as exc:
        raise DiskError(f"{source}: {exc.strerror or exc}") from exc
    blobs = root / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    key = f"{source.resolve()}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    index = _read_index(root)
    known = index.get(key)
    if known and stored_path(root, known).is_file():
        if progress:
            progress(st.st_size, st.st_size)
        return StoredImage(digest=known, path=stored_path(root, known), size=st.st_size,
                           added=False)
    digest, added = _copy_hashing(source, blobs, st.st_size, progress)
    index[key] = digest
    _write_index(root, index)
    return StoredImage(digest=digest, path=stored_path(root, digest), size=st.st_size,
                       added=added)


def _copy_hashing(source: Path, blobs: Path, total: int,
                  progress: Progress | None) -> tuple[str, bool]:
    fd, tmp = tempfile.mkstemp(prefix=".import-", dir=blobs)
    hasher = hashlib.sha256()
    done = 0
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            zero = bytes(CHUNK)
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                if chunk == zero[:len(chunk)]:
                    dst.seek(len(chunk), os.SEEK_CUR)  # keep holes as holes
                else:
                    dst.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            dst.truncate(done)
            dst.flush()
            os.fsync(dst.fileno())
        digest = "sha256:" + hasher.hexdigest()
        final = blobs / hasher.hexdigest()
        if final.is_file():
            os.unlink(tmp)
            return digest, False
        os.chmod(tmp, 0o444)  # base images of linked clones never change
        os.replace(tmp, final)
        return digest, True
    except OSError as exc:
        raise DiskError(f"{source}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_index(root: Path) -> dict[str, str]:
    try:
        data = json.loads((root / _INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_index(root: Path, index: dict[str, str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{_INDEX}.", dir=root)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(index, sort_keys=True))
    os.replace(tmp, root / _INDEX)


# -- firmware ----------------------------------------------------------------

def partition_types(head: bytes) -> list[uuid.UUID]:
    """The partition type GUIDs of the GPT in ``head`` (the first bytes of
    the raw disk, 512- or 4096-byte sectors); empty when there is none."""
    for sector in (512, 4096):
        header = head[sector:sector + 92]
        if len(header) < 92 or header[:8] != b"EFI PART":
            continue
        entries_lba, count, size = struct.unpack_from("<QII", header, 72)
        start = entries_lba * sector
        types = []
        for i in range(min(count, 256)):
            entry = head[start + i * size:start + i * size + 16]
            if len(entry) < 16:
                break
            if entry != bytes(16):
                types.append(uuid.UUID(bytes_le=entry))
        return types
    return []


def firmware_of(head: bytes) -> str:
    """``efi`` for a GPT disk with an EFI system partition and no BIOS boot
    partition (a hybrid image boots either way, and BIOS needs no OVMF);
    ``bios`` otherwise. An MBR partition of type 0xEF counts as an ESP."""
    types = partition_types(head)
    if ESP_GUID in types and BIOS_BOOT_GUID not in types:
        return "efi"
    if not types and len(head) >= 512 and head[510:512] == b"\x55\xaa":
        mbr_types = {head[446 + 16 * i + 4] for i in range(4)}
        if 0xEF in mbr_types and 0xEE not in mbr_types:
            return "efi"
    return "bios"


async def read_head(path: Path, fmt: str, *, size: int = 1 << 20) -> bytes:
    """The first ``size`` guest-visible bytes of a disk in any format
    qemu-img reads (``qemu-img dd`` to a temporary raw file)."""
    with tempfile.TemporaryDirectory(prefix="kubevisor-head-") as tmp:
        out = Path(tmp) / "head.raw"
        await _qemu_img(["dd", "-f", fmt, "-O", "raw", "bs=65536", f"count={size // 65536}",
                         f"if={path}", f"of={out}"], timeout=120.0)
        try:
            return out.read_bytes()[:size]
        except OSError as exc:
            raise DiskError(f"{path}: {exc.strerror or exc}") from exc


async def detect_firmware(path: Path, fmt: str) -> str:
    """``bios`` or ``efi`` for the disk at ``path`` (see :func:`firmware_of`)."""
    return firmware_of(await read_head(path, fmt))
