"""kubelet's CrashLoopBackOff arithmetic, kept on the containers themselves.

A container's label ``kubevisor.io/crashes`` counts the quick exits that
came right before it. When it exits, the next attempt waits
:func:`restart_delay` after its ``finishedAt``: nothing after the first
crash, then 10 s, doubling to 300 s; a container that ran for 10 minutes
resets the count. Because the count lives on the container, an agent that
restarts keeps the same back-off. Pure; used by :mod:`kubevisor.node.plan`.
"""

from __future__ import annotations

from kubevisor.runtime.types import ContainerState

INITIAL_SECONDS = 10.0
MAX_SECONDS = 300.0
RESET_AFTER_SECONDS = 600.0


def crashes_after(state: ContainerState, crashes_before: int) -> int:
    """The consecutive-crash count once ``state`` (stopped) is counted."""
    ran = (state.finished_at or 0.0) - (state.started_at or 0.0)
    if state.started_at is not None and ran >= RESET_AFTER_SECONDS:
        return 1
    return crashes_before + 1


def delay(crashes: int) -> float:
    """Seconds to wait before the next start after ``crashes`` consecutive exits."""
    if crashes <= 1:
        return 0.0
    return min(INITIAL_SECONDS * 2 ** (crashes - 2), MAX_SECONDS)
