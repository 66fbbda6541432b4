"""The controller runtime: workers that drain a work queue into a reconciler.

A :class:`Controller` owns a :class:`~kubevisor.controllers.queue.WorkQueue`
of keys (``(namespace, name)`` for most controllers, a uid for the garbage
collector) and runs ``workers`` tasks that call ``reconcile(key)``. The
reconciler reads the world afresh (the key carries no event) and its
outcome goes through :func:`next_step`, the single switch that decides:
done (forget the back-off), requeue after a delay, or requeue through the
back-off. Each reconciler module (namespace.py, gc.py) builds one; the
manager runs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

from kubevisor.controllers.errors import PermanentError, TemporaryError
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff, WorkQueue

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """A successful reconcile; ``requeue_after`` asks for another look later."""

    requeue_after: float | None = None


Step = tuple[Literal["forget", "after", "backoff"], float]


def next_step(outcome: Result | BaseException | None) -> Step:
    """The one decision of what follows a reconcile.

    ``("forget", 0)``: done; ``("after", s)``: look again in s seconds (the
    back-off is reset); ``("backoff", 0)``: requeue with the next back-off delay.
    """
    if outcome is None:
        return ("forget", 0.0)
    if isinstance(outcome, Result):
        if outcome.requeue_after is not None:
            return ("after", max(outcome.requeue_after, 0.0))
        return ("forget", 0.0)
    if isinstance(outcome, PermanentError):
        return ("forget", 0.0)
    if isinstance(outcome, TemporaryError) and outcome.delay is not None:
        return ("after", max(outcome.delay, 0.0))
    return ("backoff", 0.0)


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Kubernetes' metav1.Time wire format (seconds, Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controller(Generic[K]):
    """``await controller.run()`` in a task; cancel it to stop."""

    def __init__(self, name: str, reconcile: Callable[[K], Awaitable[Result | None]], *,
                 workers: int = 1, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        assert workers >= 1, "a controller needs at least one worker"
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        self.queue: WorkQueue[K] = WorkQueue(backoff=backoff)
        #: Counters for tests and logs: reconciles run, and how many failed.
        self.reconciles = 0
        self.failures = 0

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(self._workers):
                    group.create_task(self._worker(), name=f"{self.name}-worker-{i}")
        finally:
            self.queue.shut_down()

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: K) -> Step:
        """Reconcile ``key`` once and requeue it as :func:`next_step` says."""
        outcome: Result | BaseException | None
        self.reconciles += 1
        try:
            outcome = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            outcome = exc
            if isinstance(exc, TemporaryError | PermanentError):
                log.info("%s: %r: %s", self.name, key, exc)
            else:
                log.warning("%s: %r failed", self.name, key, exc_info=True)
        step = next_step(outcome)
        if step[0] == "forget":
            self.queue.forget(key)
        elif step[0] == "after":
            self.queue.forget(key)
            self.queue.add_after(key, step[1])
        else:
            self.queue.add_rate_limited(key)
        return step
