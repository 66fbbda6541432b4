"""What a controller expects its watch to show next (kube's ControllerExpectations).

A ReplicaSet that just asked for 10 pods must not ask again before its
pod informer has seen them: before acting it records how many creations
and which deletions it expects; the informer handlers count them off as
events arrive; :meth:`Expectations.satisfied` is true once all were seen
(or after ``ttl`` seconds, as a safety net for lost events, or when
nothing was ever expected). Not truth, only a brake: after a restart the
controller starts with no expectations and acts on what it lists. Used by
replicaset.py; the clock is injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

#: kube's ExpectationsTimeout.
TTL = 300.0


@dataclass(slots=True)
class _Entry:
    adds: int
    deletes: set[str]
    since: float = field(default=0.0)


class Expectations:
    def __init__(self, *, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}

    def expect(self, key: Hashable, *, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        """Replace what ``key`` waits for."""
        self._entries[key] = _Entry(adds, set(deletes), self._clock())

    def creation_observed(self, key: Hashable) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.adds > 0:
            entry.adds -= 1

    def deletion_observed(self, key: Hashable, pod_key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.deletes.discard(pod_key)

    def satisfied(self, key: Hashable) -> bool:
        entry = self._entries.get(key)
        if entry is None:
            return True
        if entry.adds <= 0 and not entry.deletes:
            return True
        return self._clock() - entry.since > self._ttl

    def pending(self, key: Hashable) -> tuple[int, int]:
        entry = self._entries.get(key)
        return (0, 0) if entry is None else (max(entry.adds, 0), len(entry.deletes))

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)


__all__ = ["TTL", "Expectations"]
