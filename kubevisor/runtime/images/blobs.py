"""Content-addressed blobs: ``<root>/blobs/sha256/<hex>``.

A blob is written to a temporary file beside its final place, hashed as it
is written, fsynced, and renamed into place only when its digest is the one
asked for, so a present blob is always complete and correct (a crash leaves
at most a temporary file, swept on the next start). Called by the store for
registry downloads and by archive import.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from kubevisor.runtime.errors import ImageFormatError
from kubevisor.runtime.images.manifest import check_digest

#: A temporary file untouched this long is a crash's leftover (another
#: process sharing the store, e.g. ``kubevisor image import``, may be writing
#: the younger ones).
STALE_SECONDS = 3600.0


class DigestMismatchError(ImageFormatError):
    """The bytes written do not hash to the digest they were written under."""


class BlobWriter:
    """An open temporary blob; ``write`` bytes, then ``commit``."""

    def __init__(self, tmp: Path, final: Path, digest: str) -> None:
        self._tmp = tmp
        self._final = final
        self.digest = digest
        self.written = 0
        self._hash = hashlib.sha256()
        self._file = tmp.open("wb")

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.written += len(data)

    def commit(self) -> None:
        got = "sha256:" + self._hash.hexdigest()
        if got != self.digest:
            raise DigestMismatchError(f"unexpected commit digest {got}, expected {self.digest}: failed precondition")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._final)
        fd = os.open(self._final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class BlobStore:
    """The blob directory of one image store."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.tmp_dir = root / "blobs" / ".tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        horizon = time.time() - STALE_SECONDS
        for stale in self.tmp_dir.iterdir():  # left by a crash mid-write
            with contextlib.suppress(OSError):
                if stale.stat().st_mtime < horizon:
                    stale.unlink()

    def path(self, digest: str) -> Path:
        return self.dir / check_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def begin(self, digest: str) -> BlobWriter:
        """A writer for blob ``digest``; the caller commits or aborts it."""
        return BlobWriter(self.tmp_dir / f"{uuid.uuid4().hex}", self.path(digest), digest)

    @contextlib.contextmanager
    def writer(self, digest: str) -> Iterator[BlobWriter]:
        """A writer committed when the block ends normally (raising
        :class:`DigestMismatchError` if the bytes are wrong), discarded if it
        raises."""
        writer = self.begin(digest)
        try:
            yield writer
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` (checked against ``digest`` when given); its digest."""
        digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            with self.writer(digest) as writer:
                writer.write(data)
        return digest

    def all(self) -> set[str]:
        return {f"sha256:{p.name}" for p in self.dir.iterdir()}

    def delete(self, digest: str) -> int:
        """Remove a blob; the bytes freed (0 if it was absent)."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size
