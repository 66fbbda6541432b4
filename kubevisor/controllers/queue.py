"""The work queue every controller pulls keys from, and its back-off.

Semantics of client-go's rate-limited work queue, on asyncio: a key is
queued at most once however often it is added; a key being processed is
never handed to a second worker, and if it was added meanwhile it comes
back once ``done`` is called; ``add_after`` delays (keeping the earliest
deadline); ``add_rate_limited`` delays by the key's place in the one
:class:`Backoff` sequence, which ``forget`` resets. Used by
:class:`kubevisor.controllers.runtime.Controller`; handlers of informers
call ``add``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay after the n-th consecutive failure: ``base * factor**n``, at most ``cap``."""

    base: float = 0.005
    factor: float = 2.0
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        if failures > 64:
            return self.cap
        return min(self.base * self.factor ** failures, self.cap)


#: The one back-off sequence of every controller unless configured otherwise.
DEFAULT_BACKOFF = Backoff()


class WorkQueue(Generic[K]):
    def __init__(self, *, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.backoff = backoff
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}

    def __len__(self) -> int:
        """Keys waiting to be handed out (not counting delayed ones)."""
        return len(self._dirty)

    def pending(self) -> int:
        """Keys queued, delayed or being processed: 0 means idle."""
        return len(self._dirty | self._processing | set(self._timers))

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        current = self._timers.get(key)
        if current is not None:
            if current[0] <= deadline:
                return
            current[1].cancel()
        self._timers[key] = (deadline, loop.call_at(deadline, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> float:
        """Requeue after the next back-off delay for ``key``; returns that delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = self.backoff.delay(failures)
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        """The next key; the caller must call :meth:`done` with it."""
        while True:
            key = await self._ready.get()
            if key in self._dirty and key not in self._processing:
                self._dirty.discard(key)
                self._processing.add(key)
                return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._ready.put_nowait(key)

    def shut_down(self) -> None:
        """Cancel delayed adds (workers are cancelled by their controller)."""
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
