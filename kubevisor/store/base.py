"""The store contract: a revisioned key -> bytes space with etcd semantics.

Every backend (``sqlite``, ``etcd``) implements :class:`Store`; the
apiserver is the only caller. Semantics, shared by all backends and
checked by one contract test suite (tests/store):

* One global revision, increasing by one with every successful write
  (create, update or delete). A key's ``create_revision`` is the revision
  of the write that created it; ``mod_revision`` that of its last write.
* Reads take ``revision=0`` for "now" or a past revision; a revision
  older than the compacted revision raises :class:`CompactedError` (reading
  *at* the compacted revision works, as in etcd), one the store has not
  reached :class:`FutureRevisionError`.
* Writes are compare-and-swap: ``update``/``delete`` take the
  ``mod_revision`` the caller read (``delete`` may take ``None`` for an
  unconditional delete). An acknowledged write is durable.
* ``watch(prefix, after_revision)`` yields batches of events for keys
  under ``prefix`` with revision strictly greater than ``after_revision``,
  in revision order, none lost, none repeated, until the watcher is
  closed. If ``after_revision`` is older than the compacted revision, the
  first ``__anext__`` raises :class:`CompactedError` (etcd tolerates
  ``after_revision == compacted - 1``; do not rely on either answer there).
  A consumer too slow to keep up may be ended with
  :class:`WatcherOverflowError`. When the store closes, watchers end
  (``StopAsyncIteration``) after the events already buffered.
* ``compact(revision)`` at or below the compacted revision does nothing;
  above the current revision it raises :class:`FutureRevisionError`.
* Keys are ``str``; ranges order them by code point (= UTF-8 byte order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

EventType = Literal["PUT", "DELETE"]


def prefix_end(prefix: str) -> str | None:
    """The smallest key greater than every key starting with ``prefix``
    (exclusive upper bound of a prefix range); ``None`` means no bound."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be stored; skip them
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For PUT, ``kv`` is the new value (a create when
    ``kv.create_revision == kv.mod_revision``) and ``prev`` the old one if
    any. For DELETE, ``kv.value`` is the last value, ``kv.mod_revision`` is
    the revision of the delete, and ``prev`` is the kv as it was before."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the range was read at
    more: bool  # True when ``limit`` cut the result short
    count: int  # total number of keys in the range at that revision (ignoring limit/start)


class Watcher(Protocol):
    """An async iterator of event batches; close() ends it (idempotent)."""

    def __aiter__(self) -> AsyncIterator[list[Event]]: ...

    async def __anext__(self) -> list[Event]: ...

    async def close(self) -> None: ...


class Store(Protocol):
    async def start(self) -> None:
        """Open files / connections; idempotent."""

    async def close(self) -> None:
        """Flush, release resources, end all watchers."""

    async def current_revision(self) -> int: ...

    async def compacted_revision(self) -> int: ...

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None: ...

    async def range(
        self,
        prefix: str,
        *,
        revision: int = 0,
        start_key: str | None = None,
        limit: int = 0,
    ) -> RangeResult:
        """Keys starting with ``prefix`` in key order; ``start_key`` (exclusive)
        continues a paged range; ``limit=0`` means no limit."""
        ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Raises KeyExistsError if the key is live."""
        ...

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> KeyValue:
        """Raises KeyNotFoundError, or ConflictError if the mod revision moved."""
        ...

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        """Returns the deleted kv with ``mod_revision`` = the delete's revision.
        Raises KeyNotFoundError, or ConflictError if the mod revision moved."""
        ...

    def watch(self, prefix: str, *, after_revision: int) -> Watcher: ...

    async def compact(self, revision: int) -> None:
        """Forget history at or before ``revision`` (live keys stay)."""
        ...
