"""The store contract (kubevisor/store/base.py), run against every backend:
real SQLite files and real etcd processes, nothing faked."""

from __future__ import annotations

import asyncio
import random

import pytest

from kubevisor.store.base import Event, Store, Watcher
from kubevisor.store.errors import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
)


async def collect(watcher: Watcher, n: int, timeout: float = 10.0) -> list[Event]:
    """The next ``n`` events of ``watcher`` (fails on timeout or overshoot)."""
    events: list[Event] = []

    async def run() -> None:
        while len(events) < n:
            events.extend(await watcher.__anext__())

    await asyncio.wait_for(run(), timeout)
    assert len(events) == n, [e.kv.key for e in events]
    return events


async def test_create_and_get(store: Store, ns: str) -> None:
    before = await store.current_revision()
    kv = await store.create(ns + "a", b"one")
    assert kv.key == ns + "a" and kv.value == b"one"
    assert kv.create_revision == kv.mod_revision == before + 1
    assert await store.get(ns + "a") == kv
    assert await store.get(ns + "missing") is None
    assert await store.current_revision() == before + 1


async def test_create_existing_key_fails_and_takes_no_revision(store: Store, ns: str) -> None:
    kv = await store.create(ns + "a", b"one")
    with pytest.raises(KeyExistsError):
        await store.create(ns + "a", b"two")
    assert await store.get(ns + "a") == kv
    assert await store.current_revision() == kv.mod_revision


async def test_update_compare_and_swap(store: Store, ns: str) -> None:
    first = await store.create(ns + "a", b"one")
    second = await store.update(ns + "a", b"two", expected_mod_revision=first.mod_revision)
    assert second.value == b"two"
    assert second.create_revision == first.create_revision
    assert second.mod_revision == first.mod_revision + 1
    with pytest.raises(ConflictError) as conflict:
        await store.update(ns + "a", b"stale", expected_mod_revision=first.mod_revision)
    assert conflict.value.current_revision == second.mod_revision
    with pytest.raises(KeyNotFoundError):
        await store.update(ns + "missing", b"x", expected_mod_revision=first.mod_revision)
    # an absent key's mod revision is not 0 for compare-and-swap purposes
    with pytest.raises(KeyNotFoundError):
        await store.update(ns + "missing", b"x", expected_mod_revision=0)
    with pytest.raises(KeyNotFoundError):
        await store.delete(ns + "missing", expected_mod_revision=0)
    assert await store.get(ns + "missing") is None
    assert await store.get(ns + "a") == second
    assert await store.current_revision() == second.mod_revision


async def test_delete_compare_and_swap(store: Store, ns: str) -> None:
    kv = await store.create(ns + "a", b"one")
    with pytest.raises(ConflictError):
        await store.delete(ns + "a", expected_mod_revision=kv.mod_revision + 100)
    deleted = await store.delete(ns + "a", expected_mod_revision=kv.mod_revision)
    assert deleted.value == b"one"
    assert deleted.create_revision == kv.create_revision
    assert deleted.mod_revision == kv.mod_revision + 1
    assert await store.get(ns + "a") is None
    with pytest.raises(KeyNotFoundError):
        await store.delete(ns + "a")
    with pytest.raises(KeyNotFoundError):
        await store.delete(ns + "a", expected_mod_revision=deleted.mod_revision)
    again = await store.create(ns + "a", b"reborn")
    assert again.create_revision == deleted.mod_revision + 1
    unconditional = await store.delete(ns + "a")
    assert unconditional.value == b"reborn"


async def test_revision_grows_by_one_per_successful_write(store: Store, ns: str) -> None:
    start = await store.current_revision()
    revisions = []
    kv = await store.create(ns + "k", b"0")
    revisions.append(kv.mod_revision)
    for i in range(1, 6):
        kv = await store.update(ns + "k", str(i).encode(), expected_mod_revision=kv.mod_revision)
        revisions.append(kv.mod_revision)
        with pytest.raises(ConflictError):
            await store.update(ns + "k", b"lost", expected_mod_revision=kv.mod_revision - 1)
    revisions.append((await store.create(ns + "other", b"x")).mod_revision)
    revisions.append((await store.delete(ns + "k")).mod_revision)
    assert revisions == list(range(start + 1, start + 9))
    assert await store.current_revision() == start + 8


async def test_range_prefix_paging_and_count(store: Store, ns: str) -> None:
    names = [f"{ns}pods/p{i:02d}" for i in range(10)]
    for name in random.sample(names, len(names)):
        await store.create(name, name.encode())
    await store.create(ns + "pods-other", b"not under pods/")
    await store.create(ns + "pod", b"a shorter key")
    await store.create(ns + "services/s", b"x")

    everything = await store.range(ns + "pods/")
    assert [kv.key for kv in everything.kvs] == names
    assert [kv.value for kv in everything.kvs] == [n.encode() for n in names]
    assert everything.count == 10 and not everything.more
    assert everything.revision == await store.current_revision()

    pages, start_key = [], None
    while True:
        page = await store.range(ns + "pods/", limit=3, start_key=start_key)
        assert page.count == 10
        pages.append([kv.key for kv in page.kvs])
        if not page.more:
            break
        start_key = page.kvs[-1].key
    assert pages == [names[0:3], names[3:6], names[6:9], names[9:10]]

    exact = await store.range(ns + "pods/", limit=10)
    assert len(exact.kvs) == 10 and not exact.more
    widest = await store.range(ns + "pods/", limit=2**63 - 1)  # the largest int64 limit
    assert [kv.key for kv in widest.kvs] == names and not widest.more
    all_ns = await store.range(ns)
    assert all_ns.count == 13
    assert [kv.key for kv in all_ns.kvs] == sorted(kv.key for kv in all_ns.kvs)
    assert (await store.range(ns + "nothing/")).kvs == []


async def test_reads_at_an_old_revision(store: Store, ns: str) -> None:
    a1 = await store.create(ns + "a", b"a1")
    b1 = await store.create(ns + "b", b"b1")
    a2 = await store.update(ns + "a", b"a2", expected_mod_revision=a1.mod_revision)
    await store.delete(ns + "b")
    c1 = await store.create(ns + "c", b"c1")

    at_b1 = await store.range(ns, revision=b1.mod_revision)
    assert at_b1.revision == b1.mod_revision
    assert [(kv.key, kv.value) for kv in at_b1.kvs] == [(ns + "a", b"a1"), (ns + "b", b"b1")]
    assert at_b1.count == 2
    at_a2 = await store.range(ns, revision=a2.mod_revision, limit=1)
    assert [kv.value for kv in at_a2.kvs] == [b"a2"] and at_a2.more and at_a2.count == 2
    paged = await store.range(ns, revision=a2.mod_revision, start_key=ns + "a")
    assert [kv.value for kv in paged.kvs] == [b"b1"] and paged.count == 2
    now = await store.range(ns)
    assert [(kv.key, kv.value) for kv in now.kvs] == [(ns + "a", b"a2"), (ns + "c", b"c1")]

    assert await store.get(ns + "a", revision=a1.mod_revision) == a1
    assert await store.get(ns + "b", revision=c1.mod_revision) is None
    assert await store.get(ns + "c", revision=a1.mod_revision) is None
    with pytest.raises(FutureRevisionError):
        await store.get(ns + "a", revision=c1.mod_revision + 1000)
    with pytest.raises(FutureRevisionError):
        await store.range(ns, revision=c1.mod_revision + 1000)


async def test_watch_sees_every_change_after_the_revision(store: Store, ns: str) -> None:
    start = await store.current_revision()
    watcher = store.watch(ns, after_revision=start)
    try:
        a = await store.create(ns + "a", b"1")
        a2 = await store.update(ns + "a", b"2", expected_mod_revision=a.mod_revision)
        await store.create(ns.rstrip("/") + "-elsewhere/x", b"not watched")
        gone = await store.delete(ns + "a")
        events = await collect(watcher, 3)
    finally:
        await watcher.close()
    assert [e.type for e in events] == ["PUT", "PUT", "DELETE"]
    assert [e.revision for e in events] == [a.mod_revision, a2.mod_revision, gone.mod_revision]
    assert events[0].kv == a and events[0].prev is None
    assert events[1].kv == a2 and events[1].prev == a
    assert events[2].kv.key == ns + "a" and events[2].kv.value == b"2"
    assert events[2].kv.mod_revision == gone.mod_revision
    assert events[2].prev == a2


async def test_watch_from_an_old_revision_replays_then_goes_live(store: Store, ns: str) -> None:
    start = await store.current_revision()
    written = [await store.create(f"{ns}k{i:03d}", b"v") for i in range(40)]
    watcher = store.watch(ns, after_revision=written[9].mod_revision)
    try:
        replayed = await collect(watcher, 30)
        more = [await store.create(f"{ns}m{i:03d}", b"w") for i in range(20)]
        live = await collect(watcher, 20)
    finally:
        await watcher.close()
    assert [e.kv for e in replayed] == written[10:]
    assert [e.kv for e in live] == more
    assert written[0].mod_revision == start + 1


async def test_watch_replay_races_with_writers(store: Store, ns: str) -> None:
    """A watcher opened from the past while writers run sees each write once, in order."""
    first = await store.create(ns + "first", b"0")

    async def writer(w: int) -> list[int]:
        return [(await store.create(f"{ns}w{w}-{i:03d}", b"x")).mod_revision for i in range(30)]

    tasks = [asyncio.create_task(writer(w)) for w in range(4)]
    await asyncio.sleep(0.01)
    watcher = store.watch(ns, after_revision=first.mod_revision - 1)
    try:
        acked = sorted([first.mod_revision] + [r for t in await asyncio.gather(*tasks) for r in t])
        events = await collect(watcher, len(acked))
    finally:
        await watcher.close()
    assert [e.revision for e in events] == acked


async def test_concurrent_cas_counter(store: Store, ns: str) -> None:
    """N tasks increment one counter through CAS loops: no increment lost."""
    key = ns + "counter"
    created = await store.create(key, b"0")
    watcher = store.watch(key, after_revision=created.mod_revision)
    successes = 0
    conflicts = 0

    async def increment(times: int) -> None:
        nonlocal successes, conflicts
        for _ in range(times):
            while True:
                kv = await store.get(key)
                assert kv is not None
                try:
                    await store.update(
                        key, str(int(kv.value) + 1).encode(), expected_mod_revision=kv.mod_revision
                    )
                except ConflictError:
                    conflicts += 1
                    continue
                successes += 1
                break

    try:
        await asyncio.gather(*(increment(10) for _ in range(8)))
        final = await store.get(key)
        assert final is not None
        assert int(final.value) == successes == 80
        events = await collect(watcher, 80)
    finally:
        await watcher.close()
    assert [int(e.kv.value) for e in events] == list(range(1, 81))
    assert [e.revision for e in events] == sorted(e.revision for e in events)
    assert final.mod_revision == events[-1].revision


async def test_watch_order_under_concurrent_writers(store: Store, ns: str) -> None:
    start = await store.current_revision()
    watchers = [store.watch(ns, after_revision=start), store.watch(ns + "w1-", after_revision=start)]

    async def writer(w: int) -> list[tuple[str, int]]:
        done = []
        for i in range(25):
            kv = await store.create(f"{ns}w{w}-{i:02d}", f"{w}:{i}".encode())
            done.append((kv.key, kv.mod_revision))
            if i % 5 == 4:
                kv = await store.update(kv.key, b"updated", expected_mod_revision=kv.mod_revision)
                done.append((kv.key, kv.mod_revision))
        return done

    try:
        results = await asyncio.gather(*(writer(w) for w in range(6)))
        acked = sorted((rev, key) for done in results for key, rev in done)
        everything = await collect(watchers[0], len(acked))
        only_w1 = await collect(watchers[1], 30)
    finally:
        for watcher in watchers:
            await watcher.close()
    assert [(e.revision, e.kv.key) for e in everything] == acked
    assert [(e.revision, e.kv.key) for e in only_w1] == [a for a in acked if a[1].startswith(ns + "w1-")]
    # each writer's own writes keep their order
    for done in results:
        mine = [rev for _, rev in done]
        assert mine == sorted(mine)


async def test_compaction(store: Store, ns: str) -> None:
    a1 = await store.create(ns + "a", b"a1")
    b1 = await store.create(ns + "b", b"b1")
    a2 = await store.update(ns + "a", b"a2", expected_mod_revision=a1.mod_revision)
    await store.delete(ns + "b")
    c1 = await store.create(ns + "c", b"c1")
    a3 = await store.update(ns + "a", b"a3", expected_mod_revision=a2.mod_revision)
    at = c1.mod_revision

    await store.compact(at)
    assert await store.compacted_revision() == at
    with pytest.raises(CompactedError) as compacted:
        await store.get(ns + "a", revision=a1.mod_revision)
    assert compacted.value.compacted == at
    with pytest.raises(CompactedError):
        await store.range(ns, revision=b1.mod_revision)
    old = store.watch(ns, after_revision=a1.mod_revision)
    try:
        with pytest.raises(CompactedError):
            await asyncio.wait_for(old.__anext__(), 10)
    finally:
        await old.close()

    # at and after the compacted revision, history is intact
    snapshot = await store.range(ns, revision=at)
    assert [(kv.key, kv.value) for kv in snapshot.kvs] == [(ns + "a", b"a2"), (ns + "c", b"c1")]
    assert (await store.range(ns)).kvs == [a3, c1]
    watcher = store.watch(ns, after_revision=at)
    try:
        events = await collect(watcher, 1)
    finally:
        await watcher.close()
    assert events[0].kv == a3 and events[0].prev == a2

    await store.compact(at - 1)  # older than the compacted revision: nothing happens
    assert await store.compacted_revision() == at
    with pytest.raises(FutureRevisionError):
        await store.compact(a3.mod_revision + 1000)
    revision = await store.current_revision()
    assert revision == a3.mod_revision
    assert (await store.create(ns + "d", b"d")).mod_revision == revision + 1


async def test_closed_watcher_stops(store: Store, ns: str) -> None:
    watcher = store.watch(ns, after_revision=await store.current_revision())
    await store.create(ns + "a", b"1")
    assert len(await collect(watcher, 1)) == 1
    await watcher.close()
    await watcher.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(watcher.__anext__(), 5)


async def test_paging_at_a_revision_ignores_later_writes(store: Store, ns: str) -> None:
    """What the apiserver's continue tokens rely on: every page read at the
    first page's revision shows the same snapshot, whatever happens meanwhile."""
    kvs = [await store.create(f"{ns}k{i:02d}", f"v{i}".encode()) for i in range(30)]
    expected = {kv.key: kv for kv in kvs}
    first = await store.range(ns, limit=7)
    at = first.revision
    seen = list(first.kvs)
    start_key = first.kvs[-1].key
    step = 0
    while True:
        # churn: update, delete and create around the cursor before each page
        victim = kvs[(step * 5 + 3) % 30]
        live = await store.get(victim.key)
        if live is not None:
            if step % 2:
                await store.delete(victim.key)
            else:
                await store.update(victim.key, b"changed", expected_mod_revision=live.mod_revision)
        await store.create(f"{ns}k{step:02d}x", b"new")
        page = await store.range(ns, revision=at, start_key=start_key, limit=7)
        assert page.revision == at and page.count == 30
        seen.extend(page.kvs)
        step += 1
        if not page.more:
            break
        start_key = page.kvs[-1].key
    assert seen == [expected[key] for key in sorted(expected)]
    assert (await store.range(ns)).count > 30


async def test_closing_the_store_ends_its_watchers(store: Store, ns: str) -> None:
    watcher = store.watch(ns, after_revision=await store.current_revision())
    await store.create(ns + "a", b"1")
    assert len(await collect(watcher, 1)) == 1
    pending = asyncio.create_task(watcher.__anext__())
    await asyncio.sleep(0.05)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)


async def test_large_values_round_trip(store: Store, ns: str) -> None:
    value = bytes(range(256)) * (2 * 1024 * 1024 // 256)  # 2 MiB, every byte value
    kv = await store.create(ns + "big", value)
    assert (await store.get(ns + "big")) == kv and kv.value == value
