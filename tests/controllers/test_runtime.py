"""The work queue, the back-off and the reconcile outcome switch."""

from __future__ import annotations

import asyncio

import pytest

from kubevisor.controllers.conditions import set_condition
from kubevisor.controllers.errors import PermanentError, TemporaryError
from kubevisor.controllers.queue import Backoff, WorkQueue
from kubevisor.controllers.runtime import Controller, Result, next_step


def test_backoff_sequence_doubles_and_caps() -> None:
    b = Backoff(base=0.01, factor=2.0, cap=0.05)
    assert [b.delay(n) for n in range(5)] == [0.01, 0.02, 0.04, 0.05, 0.05]
    assert b.delay(10_000) == 0.05


def test_next_step_is_the_one_switch() -> None:
    assert next_step(None) == ("forget", 0.0)
    assert next_step(Result()) == ("forget", 0.0)
    assert next_step(Result(requeue_after=3)) == ("after", 3)
    assert next_step(TemporaryError("x", delay=2.5)) == ("after", 2.5)
    assert next_step(TemporaryError("x")) == ("backoff", 0.0)
    assert next_step(PermanentError("x")) == ("forget", 0.0)
    assert next_step(RuntimeError("boom")) == ("backoff", 0.0)


async def test_queue_deduplicates_and_holds_keys_in_process() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    first = await q.get()
    assert first == "a"
    q.add("a")  # added while processing: comes back after done, not before
    second = await q.get()
    assert second == "b"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.05)
    q.done("a")
    assert await asyncio.wait_for(q.get(), 1) == "a"
    q.done("a")
    q.done("b")
    assert q.pending() == 0


async def test_add_after_keeps_earliest_deadline() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("k", 5.0)
    q.add_after("k", 0.05)
    q.add_after("k", 3.0)
    assert await asyncio.wait_for(q.get(), 1) == "k"
    assert loop.time() - start < 1.0


async def test_rate_limited_requeue_grows_until_forget() -> None:
    q: WorkQueue[str] = WorkQueue(backoff=Backoff(base=0.01, cap=1.0))
    assert q.add_rate_limited("k") == 0.01
    assert q.add_rate_limited("k") == 0.02
    assert q.failures("k") == 2
    q.forget("k")
    assert q.add_rate_limited("k") == 0.01
    q.shut_down()


async def test_controller_retries_failures_with_backoff_then_succeeds() -> None:
    calls: list[str] = []

    async def reconcile(key: str) -> Result | None:
        calls.append(key)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return None

    ctl: Controller[str] = Controller("t", reconcile, workers=2, backoff=Backoff(base=0.01))
    task = asyncio.create_task(ctl.run())
    ctl.queue.add("x")
    for _ in range(200):
        if len(calls) >= 3 and ctl.queue.pending() == 0:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == ["x", "x", "x"]
    assert ctl.failures == 2
    assert ctl.queue.failures("x") == 0  # forgotten after success


async def test_controller_never_runs_one_key_concurrently() -> None:
    running: set[str] = set()
    overlaps = 0
    done = 0

    async def reconcile(key: str) -> None:
        nonlocal overlaps, done
        if key in running:
            overlaps += 1
        running.add(key)
        await asyncio.sleep(0.01)
        running.discard(key)
        done += 1

    ctl: Controller[str] = Controller("t", reconcile, workers=4)
    task = asyncio.create_task(ctl.run())
    for _ in range(5):
        for k in ("a", "b"):
            ctl.queue.add(k)
        await asyncio.sleep(0.003)
    for _ in range(200):
        if ctl.queue.pending() == 0:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert overlaps == 0
    assert 2 <= done <= 10


def test_set_condition_moves_transition_time_only_on_flip() -> None:
    conds, changed = set_condition(None, type="Ready", status="False", reason="Wait",
                                   message="m", now="T1")
    assert changed and conds[0]["lastTransitionTime"] == "T1"
    same, changed = set_condition(conds, type="Ready", status="False", reason="Wait",
                                  message="m", now="T2")
    assert not changed and same == conds
    reworded, changed = set_condition(conds, type="Ready", status="False", reason="Other",
                                      message="m2", now="T3")
    assert changed and reworded[0]["lastTransitionTime"] == "T1"
    flipped, changed = set_condition(reworded, type="Ready", status="True", reason="Done",
                                     message="", now="T4")
    assert changed and flipped[0]["lastTransitionTime"] == "T4"
    assert conds[0]["reason"] == "Wait"  # the input was not mutated
