"""Errors raised by every store backend.

    StoreError
    ├── KeyExistsError      create() of a key that is live
    ├── KeyNotFoundError    update()/delete() of a key that is absent
    ├── ConflictError       compare-and-swap lost: the key's mod revision moved
    ├── CompactedError      a read or watch asked for a revision older than compaction
    ├── FutureRevisionError a read asked for a revision the store has not reached
    ├── WatcherOverflowError a watcher fell too far behind and was ended (serve as 410 Expired)
    └── UnavailableError    the backend cannot be reached (etcd down, disk error)

Backends translate their own failures (sqlite3, HTTP to etcd) into these
where they enter, with ``raise ... from exc``.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error."""


class KeyExistsError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFoundError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class ConflictError(StoreError):
    """The compare-and-swap failed; ``current_revision`` is the key's mod revision now."""

    def __init__(self, key: str, expected: int, current_revision: int) -> None:
        super().__init__(
            f"key {key!r}: expected mod revision {expected}, found {current_revision}"
        )
        self.key = key
        self.expected = expected
        self.current_revision = current_revision


class CompactedError(StoreError):
    """The revision asked for has been compacted away."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"required revision {requested} has been compacted (compacted revision {compacted})"
        )
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StoreError):
    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"required revision {requested} is a future revision (current {current})")
        self.requested = requested
        self.current = current


class WatcherOverflowError(StoreError):
    """A watcher's consumer was too slow: its bounded buffer filled, so the
    store ended it rather than hold back writers. Raised by the watcher's
    ``__anext__``; the events it missed are still in the store's history, so
    the caller may re-list (the apiserver sends a 410 ``Expired`` ERROR event
    and lets the client re-list, as kube-apiserver does for slow watchers)."""

    def __init__(self, prefix: str, buffered: int) -> None:
        super().__init__(f"watcher on {prefix!r} fell behind by more than {buffered} events")
        self.prefix = prefix
        self.buffered = buffered


class UnavailableError(StoreError):
    """The backend is unreachable or failed; the write may not have happened."""
