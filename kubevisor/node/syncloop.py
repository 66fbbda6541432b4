"""The loop of a level-triggered worker (one per pod, one per VM): wait to
be woken (or for the requeue delay the last sync asked for), sync, repeat
until a sync says the object is finished. A sync that raises is logged and
retried after ``retry`` seconds; cancellation ends the loop. Used by
:class:`~kubevisor.node.worker.PodWorker` and the VM worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: One sync: (seconds until the next one unless woken first, or None: only
#: when woken; whether the object is finished with).
Sync = Callable[[], Awaitable[tuple[float | None, bool]]]


async def sync_until_finished(wake: asyncio.Event, sync: Sync, *, what: str,
                              retry: float) -> None:
    """Run ``sync`` each time ``wake`` is set or its requeue delay passes,
    until it says finished; ``what`` names the object in the log."""
    timeout: float | None = None
    while True:
        if timeout is None:
            await wake.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
        wake.clear()
        try:
            timeout, finished = await sync()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: sync failed", what)
            timeout, finished = retry, False
        if finished:
            return
