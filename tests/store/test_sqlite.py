"""What only the SQLite backend promises: durability across kill -9,
revisions that survive a restart, bounded watcher buffers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubevisor.store.errors import UnavailableError, WatcherOverflowError
from kubevisor.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("durability_writer.py")


def value_of(key: str) -> bytes:
    """The value durability_writer.py stores under ``key`` (same rule)."""
    return (key * 40).encode()


async def test_revision_survives_restart_after_deletes_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.start()
    kv = await store.create("/a", b"1")
    for i in range(5):
        kv = await store.update("/a", str(i).encode(), expected_mod_revision=kv.mod_revision)
    await store.create("/b", b"b")
    last = await store.delete("/b")
    await store.compact(last.mod_revision)
    await store.close()

    reopened = SqliteStore(path)
    await reopened.start()
    try:
        assert await reopened.current_revision() == last.mod_revision
        assert await reopened.compacted_revision() == last.mod_revision
        assert await reopened.get("/a") == kv
        assert await reopened.get("/b") is None
        assert (await reopened.create("/c", b"c")).mod_revision == last.mod_revision + 1
    finally:
        await reopened.close()


async def test_slow_watcher_is_ended_and_does_not_block_writers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", watch_buffer=50)
    await store.start()
    try:
        slow = store.watch("/", after_revision=0)
        fast = store.watch("/", after_revision=0)
        await store.create("/first", b"x")
        assert len(await asyncio.wait_for(slow.__anext__(), 5)) == 1  # now live
        assert len(await asyncio.wait_for(fast.__anext__(), 5)) == 1
        seen = 0
        for i in range(200):
            await store.create(f"/k{i:03d}", b"x")
            seen += sum(len(b) for b in [await asyncio.wait_for(fast.__anext__(), 5)])
        assert seen == 200
        with pytest.raises(WatcherOverflowError):
            await asyncio.wait_for(slow.__anext__(), 5)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(slow.__anext__(), 5)
    finally:
        await store.close()


async def test_close_ends_watchers_and_refuses_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.start()
    watcher = store.watch("/", after_revision=0)
    pending = asyncio.create_task(watcher.__anext__())
    await asyncio.sleep(0.05)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(UnavailableError):
        await store.create("/a", b"1")


async def test_unwritable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = SqliteStore(tmp_path / "file" / "state.db")
    with pytest.raises((UnavailableError, OSError)):
        await store.start()


async def test_watch_replays_many_pages(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.start()
    try:
        written = await asyncio.gather(*(store.create(f"/p/{i:05d}", b"v") for i in range(2500)))
        watcher = store.watch("/p/", after_revision=0)
        events = []
        while len(events) < 2500:
            events.extend(await asyncio.wait_for(watcher.__anext__(), 5))
        await watcher.close()
        assert [e.kv for e in events] == sorted(written, key=lambda kv: kv.mod_revision)
    finally:
        await store.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    try:
        assert proc.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + random.uniform(0.3, 1.5)
        while time.monotonic() < deadline:
            key, revision = proc.stdout.readline().split()
            acked[key.decode()] = int(revision)
        proc.send_signal(signal.SIGKILL)
        for line in proc.stdout:  # acknowledged before the kill, still in the pipe
            parts = line.split()
            if len(parts) == 2:
                acked[parts[0].decode()] = int(parts[1])
    finally:
        proc.kill()
        proc.wait()
    assert len(acked) > 100

    async def check() -> None:
        store = SqliteStore(path)
        await store.start()
        try:
            stored = {kv.key: kv for kv in (await store.range("/d/")).kvs}
            assert await store.current_revision() >= max(acked.values())
            # no revision is handed out twice after the crash
            assert (await store.create("/after", b"x")).mod_revision > max(acked.values())
        finally:
            await store.close()
        missing = [key for key in acked if key not in stored]
        assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {missing[:3]}"
        for key, revision in acked.items():
            assert stored[key].value == value_of(key)
            assert stored[key].mod_revision == revision

    asyncio.run(check())


async def test_one_process_per_database(tmp_path: Path) -> None:
    first = SqliteStore(tmp_path / "state.db")
    await first.start()
    second = SqliteStore(tmp_path / "state.db")
    try:
        with pytest.raises(UnavailableError, match="in use"):
            await second.start()
    finally:
        await first.close()
    await second.start()  # free again once the first is closed
    await second.close()


async def test_values_must_be_bytes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.start()
    try:
        with pytest.raises(TypeError):
            await store.create("/a", "text")  # type: ignore[arg-type]
        assert await store.current_revision() == 0
    finally:
        await store.close()


def log_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count: int = conn.execute("SELECT count(*) FROM log").fetchone()[0]
        return count


async def test_compaction_in_steps_frees_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kubevisor.store.sqlite as backend

    monkeypatch.setattr(backend, "_COMPACT_STEP", 7)
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.start()
    try:
        kvs = {f"/k{i}": await store.create(f"/k{i}", b"0") for i in range(5)}
        for round_ in range(1, 10):
            for key, kv in kvs.items():
                kvs[key] = await store.update(key, str(round_).encode(), expected_mod_revision=kv.mod_revision)
        gone = await store.delete("/k0")
        tail = await store.update("/k1", b"tail", expected_mod_revision=kvs["/k1"].mod_revision)
        rows_before = log_rows(path)
        assert rows_before == tail.mod_revision

        await store.compact(gone.mod_revision)
        assert await store.compacted_revision() == gone.mod_revision
        rows_after = log_rows(path)
        # kept: the newest row at the compacted revision of the 4 live keys, and the tail write
        assert rows_after == 5
        snapshot = await store.range("/", revision=gone.mod_revision)
        assert [kv.key for kv in snapshot.kvs] == ["/k1", "/k2", "/k3", "/k4"]
        assert all(kv.value == b"9" for kv in snapshot.kvs)
        watcher = store.watch("/", after_revision=gone.mod_revision)
        events = await asyncio.wait_for(watcher.__anext__(), 5)
        await watcher.close()
        assert [e.kv for e in events] == [tail]
        assert events[0].prev == kvs["/k1"]
    finally:
        await store.close()


async def test_close_ends_watchers_that_never_went_live(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.start()
    await store.create("/a", b"1")
    replaying = store.watch("/", after_revision=0)
    unstarted = store.watch("/", after_revision=0)
    assert len(await asyncio.wait_for(replaying.__anext__(), 5)) == 1
    await store.close()
    for watcher in (replaying, unstarted):
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(watcher.__anext__(), 5)
