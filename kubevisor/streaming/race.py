"""The end of a two-way relay: both directions run, the first to finish
ends the relay. :func:`race` runs coroutines as tasks until one of them
finishes, then cancels and awaits the others, so no pump outlives its
relay. Used by the apiserver's node proxy, the node's VM console and
``kubevisor console``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


async def race(*coros: Coroutine[Any, Any, Any]) -> tuple[set[asyncio.Task[Any]],
                                                          list[asyncio.Task[Any]]]:
    """Run ``coros`` until the first finishes; (the tasks that finished
    first, every task in the order given), all of them over by then."""
    tasks = [asyncio.create_task(coro) for coro in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    return done, tasks
