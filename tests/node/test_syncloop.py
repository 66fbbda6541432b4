"""The worker loop: a sync runs when woken, again after its requeue delay,
after ``retry`` when it raised, and the loop ends when a sync says finished."""

from __future__ import annotations

import asyncio

from kubevisor.node.syncloop import sync_until_finished


async def test_woken_requeued_retried_after_a_failure_then_finished() -> None:
    wake = asyncio.Event()
    calls: list[str] = []

    async def sync() -> tuple[float | None, bool]:
        calls.append("sync")
        if len(calls) == 1:
            return 0.01, False  # requeue without being woken
        if len(calls) == 2:
            raise RuntimeError("boom")  # retried after `retry`
        return None, len(calls) >= 4  # then only when woken

    loop = asyncio.create_task(sync_until_finished(wake, sync, what="test", retry=0.01))
    await asyncio.sleep(0.05)
    assert calls == [] and not loop.done()  # nothing before the first wake
    wake.set()
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(calls) == 3 and not loop.done()  # waits for a wake now
    wake.set()
    await asyncio.wait_for(loop, 1)
    assert len(calls) == 4
