"""The scheduling queue: pending pods waiting for a decision.

As kube-scheduler's PriorityQueue, in three parts: *active* (a heap by
priority, then arrival), *backoff* (pods that failed recently wait
``initial * 2**(attempts-1)`` seconds, at most ``maximum``) and
*unschedulable* (pods no node fits; they stay until a cluster event —
a node added or changed, a pod deleted — moves them back, or until
``retry_interval`` has passed). A pod that was being scheduled while such
an event came goes to backoff rather than unschedulable, so the event is
not lost. Keys are (namespace, name); the pod itself is kept with its key
and replaced on every update. Driven by :mod:`.scheduler`; time comes from
the running loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass

from kubevisor.controllers.scheduler.podinfo import PodInfo

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class QueueTimes:
    initial_backoff: float = 1.0
    max_backoff: float = 10.0
    retry_interval: float = 60.0  # unschedulable pods are retried at least this often


class SchedulingQueue:
    def __init__(self, times: QueueTimes = QueueTimes()) -> None:
        self.times = times
        self._pods: dict[Key, PodInfo] = {}
        self._active: list[tuple[int, int, Key]] = []
        self._in_active: set[Key] = set()
        self._backoff: dict[Key, float] = {}  # key -> when it may go back to active
        self._unschedulable: dict[Key, float] = {}  # key -> when it was put there
        self._attempts: dict[Key, int] = {}
        self._in_flight: dict[Key, int] = {}  # key -> move count when it was popped
        self._moves = 0
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pods)

    def __contains__(self, key: Key) -> bool:
        return key in self._pods

    def get(self, key: Key) -> PodInfo | None:
        return self._pods.get(key)

    def counts(self) -> dict[str, int]:
        return {"active": len(self._in_active), "backoff": len(self._backoff),
                "unschedulable": len(self._unschedulable), "in_flight": len(self._in_flight)}

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _to_active(self, key: Key) -> None:
        self._backoff.pop(key, None)
        self._unschedulable.pop(key, None)
        if key in self._in_active or key in self._in_flight:
            return
        pod = self._pods[key]
        self._in_active.add(key)
        heapq.heappush(self._active, (-pod.priority, next(self._seq), key))
        self._wakeup.set()

    def add(self, pod: PodInfo) -> None:
        """A new pending pod (or one seen again): straight to active."""
        self._pods[pod.key] = pod
        if pod.key not in self._backoff and pod.key not in self._unschedulable:
            self._to_active(pod.key)

    def update(self, pod: PodInfo, *, relevant: bool) -> None:
        """A pending pod changed; ``relevant`` changes (spec, labels) retry it."""
        key = pod.key
        known = key in self._pods
        self._pods[key] = pod
        if not known:
            self._to_active(key)
        elif relevant and key in self._unschedulable:
            self._to_backoff_or_active(key)

    def delete(self, key: Key) -> None:
        self._pods.pop(key, None)
        self._in_active.discard(key)  # its heap entry is skipped when popped
        self._backoff.pop(key, None)
        self._unschedulable.pop(key, None)
        self._attempts.pop(key, None)

    async def pop(self) -> PodInfo:
        """The next pod to schedule; the caller must call one of :meth:`done`,
        :meth:`unschedulable` or :meth:`retry` with its key."""
        while True:
            while self._active:
                _, _, key = heapq.heappop(self._active)
                if key not in self._in_active:
                    continue
                self._in_active.discard(key)
                self._in_flight[key] = self._moves
                self._attempts[key] = self._attempts.get(key, 0) + 1
                return self._pods[key]
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key: Key, uid: str | None = None) -> None:
        """Scheduled (or gone): forget it — unless ``uid`` is given and the pod
        under ``key`` is another one by now (a pod re-created with the name)."""
        self._in_flight.pop(key, None)
        current = self._pods.get(key)
        if current is not None and uid is not None and current.uid != uid:
            self._to_active(key)
            return
        self._attempts.pop(key, None)
        self._pods.pop(key, None)

    def unschedulable(self, key: Key) -> None:
        """No node fits: wait for a cluster event (or back off if one came meanwhile)."""
        moves = self._in_flight.pop(key, None)
        if key not in self._pods:
            return
        if moves is not None and moves != self._moves:
            self._backoff[key] = self._now() + self.backoff_of(key)
        else:
            self._unschedulable[key] = self._now()

    def retry(self, key: Key) -> None:
        """An error (a failed binding): try again after the pod's back-off."""
        self._in_flight.pop(key, None)
        if key in self._pods:
            self._backoff[key] = self._now() + self.backoff_of(key)

    def backoff_of(self, key: Key) -> float:
        attempts = max(self._attempts.get(key, 1), 1)
        if attempts > 32:
            return self.times.max_backoff
        return min(self.times.initial_backoff * 2 ** (attempts - 1), self.times.max_backoff)

    def _to_backoff_or_active(self, key: Key) -> None:
        self._unschedulable.pop(key, None)
        # Back-off counts from the last attempt: a pod whose back-off is over goes
        # straight to active.
        self._backoff[key] = self._now()
        self.flush()

    def move_all(self) -> int:
        """A cluster event that may help: every unschedulable pod retries
        (through its back-off). Returns how many moved."""
        self._moves += 1
        keys = list(self._unschedulable)
        for key in keys:
            added = self._unschedulable.pop(key)
            self._backoff[key] = added + self.backoff_of(key)
        self.flush()
        return len(keys)

    def flush(self) -> None:
        """Back-off over: to active; unschedulable for too long: to back-off."""
        now = self._now()
        for key, ready in list(self._backoff.items()):
            if ready <= now:
                self._to_active(key)
        limit = now - self.times.retry_interval
        for key, added in list(self._unschedulable.items()):
            if added <= limit:
                self._to_active(key)

    def next_deadline(self) -> float | None:
        """When the earliest back-off ends (loop time), if any."""
        return min(self._backoff.values(), default=None)
