"""A writer for the cpio "newc" archive the Linux kernel unpacks as its
initramfs. Pure Python, so building the test guest needs no ``cpio``
binary and no root (every entry is owned by root whatever the builder's
uid). Used by :mod:`~kubevisor.runtime.guest.initramfs`.
"""

from __future__ import annotations

import stat
from typing import BinaryIO


class CpioWriter:
    """Append entries, then :meth:`close` to write the trailer. Inode
    numbers are assigned in order; hard links are not supported."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._ino = 0
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data),
                  0, 0, 0, 0, len(encoded), 0)
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        self._out.write(header + encoded)
        self._out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self._out.write(data)
        self._out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str, mode: int = 0o755) -> None:
        """A directory and its missing parents (idempotent)."""
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path and path not in self._dirs:
                self._dirs.add(path)
                self._entry(path, stat.S_IFDIR | mode, b"")

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        if "/" in name:
            self.directory(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if "/" in name:
            self.directory(name.rsplit("/", 1)[0])
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self) -> None:
        self._entry("TRAILER!!!", 0, b"")
