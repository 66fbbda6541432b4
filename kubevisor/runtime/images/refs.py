"""The refs index: which manifest each image name points at.

``<root>/refs.json`` maps a canonical reference (``docker.io/library/busybox:latest``
or ``name@sha256:...``) to a :class:`RefEntry`: the digest the name resolved
to (an index for multi-platform images) and the platform manifest in use.
It is replaced atomically (temporary file, fsync, rename) under an
``flock`` so the node agent and ``kubevisor image import`` can share a
store. Called by the store only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RefEntry:
    digest: str  # what the name resolved to (index or manifest)
    manifest: str  # this platform's manifest


class RefIndex:
    def __init__(self, root: Path) -> None:
        self._path = root / "refs.json"
        self._lock_path = root / "refs.lock"
        self._cache: tuple[int, int, dict[str, RefEntry]] | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> dict[str, RefEntry]:
        """The whole index (cached until the file changes)."""
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return {}
        if self._cache is not None and self._cache[:2] == (st.st_mtime_ns, st.st_ino):
            return self._cache[2]
        raw = json.loads(self._path.read_bytes())
        entries = {ref: RefEntry(**value) for ref, value in raw.items()}
        self._cache = (st.st_mtime_ns, st.st_ino, entries)
        return entries

    def get(self, ref: str) -> RefEntry | None:
        return self.load().get(ref)

    def _write(self, entries: dict[str, RefEntry]) -> None:
        tmp = self._path.with_suffix(f".tmp{os.getpid()}")
        data = {ref: {"digest": e.digest, "manifest": e.manifest} for ref, e in sorted(entries.items())}
        with tmp.open("w") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._path)

    def set(self, updates: dict[str, RefEntry]) -> None:
        with self._locked():
            entries = dict(self.load())
            entries.update(updates)
            self._write(entries)

    def remove(self, refs: set[str]) -> None:
        with self._locked():
            entries = {ref: e for ref, e in self.load().items() if ref not in refs}
            self._write(entries)
