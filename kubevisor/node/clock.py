"""Time on the wire, for every module of the node agent.

Kubernetes writes ``metav1.Time`` with second precision and
``metav1.MicroTime`` (Lease renewTime, Event eventTime) with microseconds.
Times inside the agent are Unix seconds (floats), injected as a
``Clock`` so the pure planners can be tested at any moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


def wall() -> float:
    return time.time()


def rfc3339(ts: float) -> str:
    """metav1.Time: ``2026-01-02T03:04:05Z``."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro(ts: float) -> str:
    """metav1.MicroTime: ``2026-01-02T03:04:05.123456Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str | None) -> float | None:
    """Unix seconds from either wire format (None for None or garbage)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
