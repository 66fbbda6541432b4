"""Single flight: one run of a job per key, shared by everyone who asks.

Used by the store so that concurrent pulls download a blob once and unpack a
layer once: the first caller starts the job as a task, later callers for the
same key await that task, and all of them see its result or its exception.
A caller that is cancelled stops waiting; the job itself finishes (its
result lands in the store for the next caller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _retrieve(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()  # waiters re-raise it; no "never retrieved" warning


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[T]] = {}

    async def run(self, key: str, job: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(job())
            self._running[key] = task
            task.add_done_callback(lambda _t: self._running.pop(key, None))
            task.add_done_callback(_retrieve)  # type: ignore[arg-type]
        return await asyncio.shield(task)
