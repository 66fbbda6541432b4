"""Layers unpacked once each: ``<root>/layers/<diff-id hex>/``.

A layer blob (gzip or plain tar; zstd is refused) is unpacked into a fresh
temporary directory and renamed into place when complete, so a present
layer directory is whole. The uncompressed stream is hashed on the way and
must equal the layer's ``rootfs.diff_ids`` entry from the image config.

Each layer directory is an overlayfs lower layer on its own: OCI whiteouts
become overlayfs whiteouts (``.wh.<name>`` → a 0/0 character device
``<name>``; ``.wh..wh..opq`` → the ``trusted.overlay.opaque=y`` xattr on
its directory), so layers are shared between images and containers as is.

Safety: entry names are cleaned, and a name that climbs out of the layer
(``../x``) or passes through a symlink is refused with
:class:`~kubevisor.runtime.errors.ImageFormatError`; symlinks are created
as they are (absolute targets included) and never followed while
unpacking. Owners, modes (setuid included), times, hard links, fifos,
device nodes (best effort) and ``SCHILY.xattr`` extended attributes are
kept. Needs root for ownership, device nodes and whiteouts.

Called by the store after a pull and by archive import; the rootfs module
reads the directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import uuid
import zlib
from pathlib import Path
from typing import IO

from kubevisor.runtime.errors import ImageError, ImageFormatError
from kubevisor.runtime.images.flight import SingleFlight
from kubevisor.runtime.images.manifest import check_digest

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)


class _HashingReader:
    """A read-only stream that hashes what passes through it.

    Some writers (umoci 0.4 among them) end a layer right after the last
    file's data, without the padding to 512 bytes and the end-of-archive
    blocks; Go's archive/tar, hence containerd, reads such a layer to its
    end. So at end of input this reader supplies (unhashed) zeros up to the
    next block boundary, and counts them: the unpacker then checks that no
    file's data lay in them (that would be a truncated layer).
    """

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self.hash = hashlib.sha256()
        self.total = 0
        self.synthetic = 0
        self._eof = False
        self._pad = 0

    def read(self, size: int = -1) -> bytes:
        if not self._eof:
            data = self._inner.read(size)
            if data:
                self.hash.update(data)
                self.total += len(data)
                return data
            self._eof = True
            self._pad = -self.total % 512
        count = self._pad if size < 0 else min(size, self._pad)
        self._pad -= count
        self.synthetic += count
        return b"\0" * count

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _clean(name: str, *, layer: str) -> str:
    """The entry name relative to the layer root ("." for the root itself);
    refuses names that climb out of it."""
    cleaned = posixpath.normpath(name.lstrip("/") or ".")
    if cleaned == ".." or cleaned.startswith("../"):
        raise ImageFormatError(f"layer {layer}: entry {name!r} escapes the root filesystem (path traversal)")
    return cleaned


def _parent(root: Path, rel: str, *, layer: str) -> Path:
    """The directory that will hold ``rel``, created (0755, root-owned) where
    missing; refuses to pass through a symlink or a non-directory."""
    path = root
    for part in posixpath.dirname(rel).split("/"):
        if part in ("", "."):
            continue
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise ImageFormatError(
                f"layer {layer}: entry {rel!r} passes through the symlink "
                f"{path.relative_to(root)!s} (path traversal)"
            )
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            os.mkdir(path, 0o755)
    return path


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _set_xattrs(path: Path, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            with contextlib.suppress(OSError):
                os.setxattr(path, key.removeprefix("SCHILY.xattr."),
                            value.encode("utf-8", "surrogateescape"), follow_symlinks=False)  # fmt: skip


def _set_attrs(path: Path, member: tarfile.TarInfo) -> None:
    """Owner, then mode (chown clears setuid bits), xattrs, then times."""
    with contextlib.suppress(PermissionError):
        os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    _set_xattrs(path, member)
    with contextlib.suppress(OSError):
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, dirs: list[tuple[Path, tarfile.TarInfo]], *, layer: str) -> None:  # fmt: skip
    rel = _clean(member.name, layer=layer)
    if rel == ".":
        if member.isdir():
            dirs.append((root, member))
        return
    parent = _parent(root, rel, layer=layer)
    base = posixpath.basename(rel)
    if base == OPAQUE_MARKER:
        os.setxattr(parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
        return
    if base.startswith(WHITEOUT_PREFIX):
        target = parent / base.removeprefix(WHITEOUT_PREFIX)
        _remove(target)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        with contextlib.suppress(PermissionError):
            os.lchown(target, member.uid, member.gid)
        return
    target = parent / base
    if member.isdir():
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                os.unlink(target)
        with contextlib.suppress(FileExistsError):
            os.mkdir(target, 0o700)
        dirs.append((target, member))
        return
    _remove(target)
    if member.isreg():
        source = tar.extractfile(member)
        assert source is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        link_rel = _clean(member.linkname, layer=layer)
        source_path = _parent(root, link_rel, layer=layer) / posixpath.basename(link_rel)
        if link_rel == "." or not os.path.lexists(source_path):
            raise ImageFormatError(f"layer {layer}: hard link {member.name!r} to missing {member.linkname!r}")
        os.link(source_path, target, follow_symlinks=False)
        return  # a hard link shares its target's inode and attributes
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        except PermissionError:
            return  # best effort: device nodes need CAP_MKNOD
    elif member.isfifo():
        os.mkfifo(target, 0o600)
    else:
        return  # other entry types (e.g. sparse, contiguous) carry nothing we keep
    _set_attrs(target, member)


def unpack_layer(blob: Path, dest: Path, *, diff_id: str) -> None:
    """Unpack the layer ``blob`` into the empty directory ``dest``; raises
    :class:`ImageFormatError` when the blob is malformed, unsafe, or does not
    hash to ``diff_id`` once uncompressed. Blocking: run it in a thread."""
    layer = diff_id[:19]
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    data_end = 0
    with blob.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            raise ImageFormatError(f"layer {layer}: zstd-compressed layers are not supported")
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if magic.startswith(b"\x1f\x8b") else raw  # type: ignore[assignment]
        reader = _HashingReader(stream)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    _unpack_member(tar, member, dest, dirs, layer=layer)
                    if member.isreg():
                        data_end = member.offset_data + member.size
            reader.drain()
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ImageFormatError(f"layer {layer}: not a valid tar archive: {exc}") from exc
    if reader.synthetic and data_end > reader.total:
        raise ImageFormatError(f"layer {layer}: truncated (a file's data runs past the end)")
    got = "sha256:" + reader.hash.hexdigest()
    if got != diff_id:
        raise ImageFormatError(f"layer {layer}: uncompressed digest {got} does not match diff_id {diff_id}")
    for path, member in reversed(dirs):  # deepest last-written first, after their contents
        _set_attrs(path, member)


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs {path}: {os.strerror(code)}")
    finally:
        os.close(fd)


class LayerStore:
    """The unpacked layers of one image store; each unpacked at most once,
    also when several pulls ask for it at the same time."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "layers"
        self.tmp_dir = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._flight: SingleFlight[Path] = SingleFlight()

    def path(self, diff_id: str) -> Path:
        return self.dir / check_digest(diff_id).removeprefix("sha256:")

    def has(self, diff_id: str) -> bool:
        return self.path(diff_id).is_dir()

    def all(self) -> set[str]:
        return {f"sha256:{p.name}" for p in self.dir.iterdir() if len(p.name) == 64}

    async def ensure(self, diff_id: str, blob: Path) -> Path:
        """The directory of layer ``diff_id``, unpacked from ``blob`` if absent."""
        final = self.path(diff_id)
        if final.is_dir():
            return final

        async def unpack() -> Path:
            if not final.is_dir():
                await asyncio.to_thread(self._unpack, blob, final, diff_id)
            return final

        return await self._flight.run(diff_id, unpack)

    def _unpack(self, blob: Path, final: Path, diff_id: str) -> None:
        work = self.tmp_dir / f"layer-{uuid.uuid4().hex}"
        work.mkdir(mode=0o755)
        try:
            unpack_layer(blob, work, diff_id=diff_id)
            _syncfs(work)  # the files are on disk before the layer looks whole
            os.rename(work, final)
        except OSError as exc:
            if final.is_dir():  # another process unpacked it first
                return
            raise ImageError(f"layer {diff_id[:19]}: cannot unpack: {exc}") from exc
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)

    def delete(self, diff_id: str) -> None:
        path = self.path(diff_id)
        if path.is_dir():
            # rename first so a half-deleted layer never looks whole
            doomed = self.tmp_dir / f"gone-{uuid.uuid4().hex}"
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
