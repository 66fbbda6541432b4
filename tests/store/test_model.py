"""Random operation sequences against every backend, checked against a
plain dict model: results, errors, revisions, reads at every past revision,
and the full watch history."""

from __future__ import annotations

import asyncio
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubevisor.store.base import Event, KeyValue, Store
from kubevisor.store.errors import ConflictError, KeyExistsError, KeyNotFoundError

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
