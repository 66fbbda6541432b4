"""The SQLite store's cache of current values: ``get`` answers what the
database holds after every kind of write, reads never go back in revision,
and the cache stays within its byte budget."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kubevisor.store.base import Event, KeyValue
from kubevisor.store.errors import ConflictError
from kubevisor.store.sqlite import SqliteStore, _ValueCache


def _db_value(path: Path, key: str) -> bytes | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT l.value FROM current c JOIN log l ON l.revision = c.mod_revision WHERE c.key = ?",
            (key,),
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else bytes(row[0])


async def test_get_follows_every_write(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.start()
    try:
        kv = await store.create("/k", b"v1")
        got = await store.get("/k")
        assert got is not None and got.value == b"v1" and got.mod_revision == kv.mod_revision
        kv = await store.update("/k", b"v2", expected_mod_revision=kv.mod_revision)
        got = await store.get("/k")
        assert got is not None and got.value == b"v2" and got.mod_revision == kv.mod_revision
        assert got.create_revision == kv.create_revision
        assert _db_value(path, "/k") == b"v2"
        await store.delete("/k")
        assert await store.get("/k") is None
        again = await store.create("/k", b"v3")
        got = await store.get("/k")
        assert got is not None and got.value == b"v3" and got.create_revision == again.mod_revision
        # A failed compare-and-swap changes nothing, in the cache either.
        with pytest.raises(ConflictError):
            await store.update("/k", b"lost", expected_mod_revision=kv.mod_revision)
        got = await store.get("/k")
        assert got is not None and got.value == b"v3"
        # A past revision still reads the history, not the cache.
        old = await store.get("/k", revision=kv.mod_revision)
        assert old is not None and old.value == b"v2"
    finally:
        await store.close()


async def test_values_survive_restart_without_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.start()
    kv = await store.create("/a", b"1")
    await store.update("/a", b"2", expected_mod_revision=kv.mod_revision)
    await store.close()
    store = SqliteStore(path)
    await store.start()
    try:
        got = await store.get("/a")
        assert got is not None and got.value == b"2"
    finally:
        await store.close()


def _put(key: str, rev: int, value: bytes = b"x") -> Event:
    return Event("PUT", KeyValue(key, value, 1, rev))


def test_cache_never_goes_back_in_revision() -> None:
    cache = _ValueCache(1 << 20)
    # A read saw revision 11 before the events of revisions 10 and 11 arrive.
    cache.read(KeyValue("/k", b"new", 1, 11), "/k", committing=11)
    cache.apply([_put("/k", 10, b"old")])
    hit = cache.get("/k")
    assert hit is not None and hit.mod_revision == 11
    # A read saw /g absent although its create (revision 12) was committed;
    # the create's event then arrives, followed by its delete (13): the
    # create is not cached, so no read finds /g after having missed it.
    cache.read(None, "/g", committing=13)
    cache.apply([_put("/g", 12)])
    assert cache.get("/g") is None
    cache.apply([Event("DELETE", KeyValue("/g", b"x", 12, 13))])
    assert cache.get("/g") is None
    # Writes after every read's horizon are cached.
    cache.apply([_put("/n", 14)])
    assert cache.get("/n") is not None
    cache.apply([Event("DELETE", KeyValue("/n", b"x", 14, 15))])
    assert cache.get("/n") is None


def test_cache_keeps_to_its_budget() -> None:
    cache = _ValueCache(100)
    cache.apply([_put(f"/k{i}", i + 1, b"0123456789") for i in range(25)])
    assert cache.size <= 100
    assert cache.size == sum(len(kv.value) for kv in cache.entries.values())
    assert cache.get("/k24") is not None and cache.get("/k0") is None
    cache.apply([_put("/big", 30, b"x" * 101)])
    assert cache.get("/big") is None and cache.size <= 100
