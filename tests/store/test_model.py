"""Random operation sequences against every backend, checked against a
plain dict model: results, errors, revisions, reads at every past revision,
and the full watch history."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubevisor.store.base import Event, KeyValue, Store
from kubevisor.store.errors import (
    CompactedError,
    ConflictError,
    KeyExistsError,
    KeyNotFoundError,
)

KEYS = ["a", "b", "c", "a/x", "b-"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(KEYS), st.binary(max_size=8)),
        st.tuples(st.just("update"), st.sampled_from(KEYS), st.binary(max_size=8), st.booleans()),
        st.tuples(st.just("delete"), st.sampled_from(KEYS), st.sampled_from(["any", "right", "stale"])),
    ),
    max_size=25,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=ops)
async def test_random_operations_match_a_dict_model(
    store: Store, ops: list[tuple[object, ...]]
) -> None:
    ns = f"/m-{uuid.uuid4().hex[:10]}/"
    model: dict[str, KeyValue] = {}
    snapshots: dict[int, dict[str, KeyValue]] = {}
    expected_events: list[Event] = []
    start = revision = await store.current_revision()
    for op in ops:
        kind, name = op[0], ns + str(op[1])
        current = model.get(name)
        if kind == "create":
            value = bytes(op[2])  # type: ignore[arg-type]
            if current is not None:
                try:
                    await store.create(name, value)
                except KeyExistsError:
                    continue
                raise AssertionError("create of a live key succeeded")
            kv = await store.create(name, value)
            revision += 1
            assert kv == KeyValue(name, value, revision, revision)
            expected_events.append(Event("PUT", kv))
        elif kind == "update":
            value, stale = bytes(op[2]), op[3]  # type: ignore[arg-type]
            expected = (current.mod_revision - 1 if stale else current.mod_revision) if current else 1
            if current is None or stale:
                error = KeyNotFoundError if current is None else ConflictError
                try:
                    await store.update(name, value, expected_mod_revision=expected)
                except error:
                    continue
                raise AssertionError(f"update should have raised {error.__name__}")
            kv = await store.update(name, value, expected_mod_revision=expected)
            revision += 1
            assert kv == KeyValue(name, value, current.create_revision, revision)
            expected_events.append(Event("PUT", kv, current))
        else:
            mode = op[2]
            expected_rev = None
            if mode != "any":
                base = current.mod_revision if current else 1
                expected_rev = base - 1 if mode == "stale" else base
            if current is None or mode == "stale":
                error = KeyNotFoundError if current is None else ConflictError
                try:
                    await store.delete(name, expected_mod_revision=expected_rev)
                except error:
                    continue
                raise AssertionError(f"delete should have raised {error.__name__}")
            kv = await store.delete(name, expected_mod_revision=expected_rev)
            revision += 1
            assert kv == KeyValue(name, current.value, current.create_revision, revision)
            expected_events.append(Event("DELETE", kv, current))
        if kind == "delete":
            del model[name]
        else:
            model[name] = kv
        snapshots[revision] = dict(model)
        assert await store.get(name) == model.get(name)

    assert await store.current_revision() == revision
    assert (await store.range(ns)).kvs == [model[k] for k in sorted(model)]
    for at, snapshot in snapshots.items():
        result = await store.range(ns, revision=at)
        assert result.kvs == [snapshot[k] for k in sorted(snapshot)]
        assert result.count == len(snapshot)
    if expected_events:
        watcher = store.watch(ns, after_revision=start)
        seen: list[Event] = []
        try:
            while len(seen) < len(expected_events):
                seen.extend(await asyncio.wait_for(watcher.__anext__(), 10))
        finally:
            await watcher.close()
        assert seen == expected_events


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_random_writes_and_compactions(store: Store, data: st.DataObject) -> None:
    """History at and after the compacted revision stays exact (reads and
    watch replay); before it, reads and watches raise CompactedError."""
    ns = f"/c-{uuid.uuid4().hex[:10]}/"
    model: dict[str, KeyValue] = {}
    snapshots: dict[int, dict[str, KeyValue]] = {}
    events: list[Event] = []
    compacted = start = await store.current_revision()
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        name = ns + data.draw(st.sampled_from(KEYS), label="key")
        current = model.get(name)
        action = data.draw(st.sampled_from(["write", "write", "write", "delete", "compact"]))
        if action == "compact":
            target = start + data.draw(st.integers(0, len(events)), label="compact offset")
            await store.compact(target)
            compacted = max(compacted, target)
            continue
        if action == "delete" and current is not None:
            kv = await store.delete(name, expected_mod_revision=current.mod_revision)
            events.append(Event("DELETE", kv, current))
            del model[name]
        elif current is None:
            kv = await store.create(name, b"c")
            events.append(Event("PUT", kv))
            model[name] = kv
        else:
            value = b"u%d" % len(events)
            kv = await store.update(name, value, expected_mod_revision=current.mod_revision)
            events.append(Event("PUT", kv, current))
            model[name] = kv
        snapshots[kv.mod_revision] = dict(model)

    for at, snapshot in snapshots.items():
        if at < compacted:
            with pytest.raises(CompactedError):
                await store.range(ns, revision=at)
        else:
            assert (await store.range(ns, revision=at)).kvs == [snapshot[k] for k in sorted(snapshot)]
    if compacted > start:
        assert await store.compacted_revision() >= compacted
        old = store.watch(ns, after_revision=compacted - 2)
        try:
            with pytest.raises(CompactedError):
                await asyncio.wait_for(old.__anext__(), 10)
        finally:
            await old.close()
    after = [e for e in events if e.revision > compacted]
    if after:
        watcher = store.watch(ns, after_revision=compacted)
        seen: list[Event] = []
        try:
            while len(seen) < len(after):
                seen.extend(await asyncio.wait_for(watcher.__anext__(), 10))
        finally:
            await watcher.close()
        assert seen == after
