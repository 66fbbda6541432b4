"""Pod status writes for the node agent, as kubelet's status manager does
them: pod workers hand over the status they want, a few writers send it.

:meth:`StatusManager.set` never waits: it keeps only the newest status per
pod uid and queues the uid once. ``writers`` tasks (bounded concurrency)
take uids in order and send a JSON merge patch of ``pods/<name>/status``
holding the whole status, ``null`` for what the previous status had and
this one drops, and ``metadata.uid`` (a pod deleted and made again under
the same name is never written). A status patch needs no resourceVersion,
so it cannot conflict with the watch's newer copies and no worker loops on
409s. A status that changes while its write is in flight is written once
that write ends; a failed write is retried with a back-off unless a newer
status came. Pure part: :func:`status_patch`. Started by
:class:`~kubevisor.node.pods.PodManager`; written pods go back to it
through ``on_written``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubevisor.client import (
    Client,
    ClientError,
    ConflictError,
    InvalidError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    TransportError,
)

JSON = dict[str, Any]
log = logging.getLogger(__name__)
RETRY_SECONDS = (0.2, 5.0)


def status_patch(old: JSON | None, new: JSON) -> JSON:
    """``new`` as a merge patch over ``old``: every field of ``new``, and
    ``None`` for each key of a map in ``old`` that ``new`` lacks (lists are
    replaced whole by a merge patch, so only maps are walked)."""
    out: JSON = {}
    for key, value in new.items():
        before = (old or {}).get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            out[key] = status_patch(before, value)
        else:
            out[key] = value
    for key in (old or {}):
        if key not in new:
            out[key] = None
    return out


@dataclass(slots=True)
class _Want:
    namespace: str
    name: str
    status: JSON
    base: JSON | None  # what the server holds (as far as this agent knows)
    failures: int = 0


class StatusManager:
    def __init__(self, client: Client, *, writers: int = 8,
                 on_written: Callable[[JSON], None] = lambda pod: None) -> None:
        self.client = client
        self.writers = writers
        self.on_written = on_written
        self._want: dict[str, _Want] = {}  # uid -> newest status not yet sent
        self._sent: dict[str, JSON] = {}  # uid -> the last status the server took
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._ready = asyncio.Event()
        #: Writes made and failed (for tests and logs).
        self.writes = 0
        self.failures = 0

    def set(self, pod: JSON, status: JSON) -> None:
        """Write ``status`` for ``pod`` soon (replaces a status still waiting)."""
        md = pod["metadata"]
        uid = md["uid"]
        old = self._want.get(uid)
        base = old.base if old is not None else self._sent.get(uid, pod.get("status"))
        self._want[uid] = _Want(md["namespace"], md["name"], status, base)
        self._enqueue(uid)

    def pending(self, uid: str) -> bool:
        """Whether a status of this pod waits or is being written."""
        return uid in self._want or uid in self._busy

    def forget(self, uid: str) -> None:
        """The pod is gone: drop what waits for it."""
        self._want.pop(uid, None)
        self._sent.pop(uid, None)

    def _enqueue(self, uid: str) -> None:
        if uid in self._queued or uid in self._busy:
            return
        self._queued.add(uid)
        self._queue.append(uid)
        self._ready.set()

    async def run(self) -> None:
        """The writers, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for i in range(self.writers):
                group.create_task(self._writer(), name=f"pod-status-writer-{i}")

    async def _writer(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            uid = self._queue.popleft()
            self._queued.discard(uid)
            want = self._want.pop(uid, None)
            if want is None:
                continue
            self._busy.add(uid)
            try:
                retry = await self._write(uid, want)
            finally:
                self._busy.discard(uid)
            if retry is not None and uid not in self._want:
                want.failures += 1
                self._want[uid] = want
                delay = min(RETRY_SECONDS[0] * 2 ** (want.failures - 1), RETRY_SECONDS[1])
                asyncio.get_running_loop().call_later(delay, self._enqueue, uid)
            elif uid in self._want:
                self._enqueue(uid)

    async def _write(self, uid: str, want: _Want) -> ClientError | None:
        """One patch; the error to retry after, or None (written or moot)."""
        patch = {"metadata": {"uid": uid}, "status": status_patch(want.base, want.status)}
        try:
            pod = await self.client.patch("v1", "Pod", want.name, patch,
                                          namespace=want.namespace, subresource="status")
        except (NotFoundError, ConflictError, InvalidError) as exc:
            # Gone, or another pod now has this name (its uid differs).
            log.debug("pod %s/%s: status not written: %s", want.namespace, want.name, exc)
            self.forget(uid)
            return None
        except (TransportError, ServerError, TooManyRequestsError) as exc:
            self.failures += 1
            log.info("pod %s/%s: status write failed (retrying): %s",
                     want.namespace, want.name, exc)
            return exc
        except ClientError as exc:
            self.failures += 1
            log.warning("pod %s/%s: status write refused: %s", want.namespace, want.name, exc)
            return None
        self.writes += 1
        self._sent[uid] = pod.get("status") or want.status
        nxt = self._want.get(uid)
        if nxt is not None:
            nxt.base = self._sent[uid]
        with contextlib.suppress(Exception):
            self.on_written(pod)
        return None
