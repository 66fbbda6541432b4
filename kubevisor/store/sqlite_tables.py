"""The tables of the SQLite backend and every statement over them.

Only :mod:`kubevisor.store.sqlite` calls this: its writer thread runs
:func:`apply_op` and :func:`compact_to` inside its batch transaction, its
readers run the read functions (wrapped in :func:`snapshot` when several
SELECTs must see one state). Layout and semantics: see that module.
"""

from __future__ import annotations

import asyncio
import operator
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kubevisor.store.base import Event, KeyValue, RangeResult, prefix_end
from kubevisor.store.errors import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
"""

# How many log rows one replay page of a watcher reads.
REPLAY_PAGE = 1000

OpKind = Literal["create", "update", "delete", "compact"]


@dataclass(slots=True)
class Op:
    """One queued write; the writer settles ``future`` after its commit."""

    kind: OpKind
    key: str
    value: bytes
    expected: int | None
    future: asyncio.Future[Any]


@dataclass(slots=True)
class Meta:
    """The ``meta`` table: the store revision and the compacted revision."""

    revision: int
    compacted: int


def read_meta(conn: sqlite3.Connection) -> Meta:
    values = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    return Meta(revision=values["revision"], compacted=values["compacted"])


def snapshot(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
    """Run several SELECTs in one read transaction (one consistent snapshot)."""
    conn.execute("BEGIN")
    try:
        return fn()
    finally:
        conn.execute("COMMIT")


def _check_revision(conn: sqlite3.Connection, revision: int) -> int:
    """The revision to read at (``0`` is now); raise if compacted or in the future."""
    meta = read_meta(conn)
    if revision == 0:
        return meta.revision
    if revision > meta.revision:
        raise FutureRevisionError(revision, meta.revision)
    if revision < meta.compacted:
        raise CompactedError(revision, meta.compacted)
    return revision


_CURRENT_ROW = (
    "SELECT c.key, l.value, c.create_revision, c.mod_revision FROM current c "
    "JOIN log l ON l.revision = c.mod_revision"
)


def get_now(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    row = conn.execute(_CURRENT_ROW + " WHERE c.key = ?", (key,)).fetchone()
    return KeyValue(*row) if row else None


def get_at(conn: sqlite3.Connection, key: str, revision: int) -> KeyValue | None:
    at = _check_revision(conn, revision)
    row = conn.execute(
        "SELECT key, value, create_revision, revision, deleted FROM log "
        "WHERE key = ? AND revision <= ? ORDER BY revision DESC LIMIT 1",
        (key, at),
    ).fetchone()
    if row is None or row[4]:
        return None
    return KeyValue(row[0], row[1], row[2], row[3])


def _key_bounds(prefix: str, start_key: str | None) -> tuple[str, str]:
    """The lower bound of a paged range: (SQL operator, key)."""
    if start_key is not None and start_key >= prefix:
        return ">", start_key
    return ">=", prefix


def read_range(
    conn: sqlite3.Connection, prefix: str, revision: int, start_key: str | None, limit: int
) -> RangeResult:
    at = _check_revision(conn, revision)
    end = prefix_end(prefix)
    op, low = _key_bounds(prefix, start_key)
    # one more row than asked tells whether more follow; SQLite's LIMIT is int64
    fetch = min(limit + 1, 2**63 - 1) if limit > 0 else -1
    upper = " AND c.key < :end" if end is not None else ""
    params = {"low": low, "end": end, "fetch": fetch, "prefix": prefix, "at": at}
    # Keys not written since `at` have their value at `at` in `current`...
    unchanged = " AND c.mod_revision <= :at" if revision else ""
    rows = conn.execute(
        f"{_CURRENT_ROW} WHERE c.key {op} :low{upper}{unchanged} ORDER BY c.key LIMIT :fetch",
        params,
    ).fetchall()
    count = conn.execute(
        f"SELECT count(*) FROM current c WHERE c.key >= :prefix{upper}{unchanged}", params
    ).fetchone()[0]
    if revision:
        # ...the keys written since (few, for a recent `at`) need the log:
        # their newest row at or before `at`, unless it is a tombstone.
        changed = conn.execute(
            "SELECT l.key, l.value, l.create_revision, l.revision, l.deleted FROM ("
            f"  SELECT DISTINCT c.key FROM log c WHERE c.revision > :at AND c.key >= :prefix{upper}"
            ") t JOIN log l ON l.revision = ("
            "  SELECT max(revision) FROM log WHERE key = t.key AND revision <= :at)",
            params,
        ).fetchall()
        live = [row[:4] for row in changed if not row[4]]
        count += len(live)
        extra = [row for row in live if (row[0] > low if op == ">" else row[0] >= low)]
        if extra:
            rows = sorted(rows + extra, key=operator.itemgetter(0))
            if limit > 0:
                rows = rows[:fetch]
    more = limit > 0 and len(rows) > limit
    if more:
        rows = rows[:limit]
    return RangeResult(kvs=[KeyValue(*r) for r in rows], revision=at, more=more, count=count)


def read_history(
    conn: sqlite3.Connection, prefix: str, after: int, upto: int
) -> tuple[list[Event], int]:
    """Events under ``prefix`` in (after, upto], at most one page; and the
    revision the page covers up to."""
    meta = read_meta(conn)
    if after < meta.compacted:
        raise CompactedError(after, meta.compacted)
    end = prefix_end(prefix)
    upper = " AND l.key < :end" if end is not None else ""
    rows = conn.execute(
        "SELECT l.revision, l.key, l.value, l.create_revision, l.deleted, "
        "p.revision, p.value, p.create_revision, p.deleted "
        "FROM log l LEFT JOIN log p ON p.revision = ("
        "  SELECT max(revision) FROM log WHERE key = l.key AND revision < l.revision) "
        f"WHERE l.revision > :after AND l.revision <= :upto AND l.key >= :prefix{upper} "
        "ORDER BY l.revision LIMIT :page",
        {"after": after, "upto": upto, "prefix": prefix, "end": end, "page": REPLAY_PAGE},
    ).fetchall()
    events: list[Event] = []
    for rev, key, value, create_rev, deleted, p_rev, p_value, p_create, p_deleted in rows:
        prev = None
        if p_rev is not None and not p_deleted:
            prev = KeyValue(key, p_value, p_create, p_rev)
        if deleted:
            last = prev.value if prev is not None else b""
            events.append(Event("DELETE", KeyValue(key, last, create_rev, rev), prev))
        else:
            events.append(Event("PUT", KeyValue(key, value, create_rev, rev), prev))
    covered = rows[-1][0] if len(rows) == REPLAY_PAGE else upto
    return events, covered


def history_snapshot(
    conn: sqlite3.Connection, *, prefix: str, after: int, upto: int
) -> tuple[list[Event], int]:
    return snapshot(conn, lambda: read_history(conn, prefix, after, upto))


def _current_with_value(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    row = conn.execute(_CURRENT_ROW + " WHERE c.key = ?", (key,)).fetchone()
    return KeyValue(*row) if row else None


def apply_op(conn: sqlite3.Connection, meta: Meta, op: Op, events: list[Event]) -> object:
    """Apply one operation inside the writer's transaction; raise StoreError
    (nothing written) when its check fails."""
    if op.kind == "compact":
        return compact_to(conn, meta, op.expected or 0)
    if op.kind == "create":
        if conn.execute("SELECT 1 FROM current WHERE key = ?", (op.key,)).fetchone():
            raise KeyExistsError(op.key)
        meta.revision += 1
        rev = meta.revision
        conn.execute("INSERT INTO log VALUES (?, ?, ?, ?, 0)", (rev, op.key, op.value, rev))
        conn.execute("INSERT INTO current VALUES (?, ?, ?)", (op.key, rev, rev))
        kv = KeyValue(op.key, op.value, rev, rev)
        events.append(Event("PUT", kv))
        return kv
    prev = _current_with_value(conn, op.key)
    if prev is None:
        raise KeyNotFoundError(op.key)
    if op.expected is not None and prev.mod_revision != op.expected:
        raise ConflictError(op.key, op.expected, prev.mod_revision)
    meta.revision += 1
    rev = meta.revision
    if op.kind == "update":
        conn.execute(
            "INSERT INTO log VALUES (?, ?, ?, ?, 0)", (rev, op.key, op.value, prev.create_revision)
        )
        conn.execute("UPDATE current SET mod_revision = ? WHERE key = ?", (rev, op.key))
        kv = KeyValue(op.key, op.value, prev.create_revision, rev)
        events.append(Event("PUT", kv, prev))
        return kv
    conn.execute("INSERT INTO log VALUES (?, ?, x'', ?, 1)", (rev, op.key, prev.create_revision))
    conn.execute("DELETE FROM current WHERE key = ?", (op.key,))
    kv = KeyValue(op.key, prev.value, prev.create_revision, rev)
    events.append(Event("DELETE", kv, prev))
    return kv


def compact_to(conn: sqlite3.Connection, meta: Meta, revision: int) -> None:
    if revision > meta.revision:
        raise FutureRevisionError(revision, meta.revision)
    if revision <= meta.compacted:
        return None
    # Keep, per key, the newest row at or before `revision` unless it is a
    # tombstone; every row after `revision` stays. Only keys written since
    # the last compaction can have rows to drop.
    conn.execute(
        "DELETE FROM log WHERE key IN ("
        "  SELECT key FROM log WHERE revision > :since AND revision <= :at) "
        "AND revision <= :at AND (deleted = 1 OR revision < ("
        "  SELECT max(l2.revision) FROM log l2 WHERE l2.key = log.key AND l2.revision <= :at))",
        {"at": revision, "since": meta.compacted},
    )
    meta.compacted = revision
    return None
