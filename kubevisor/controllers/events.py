"""Events about pods, written the way client-go's recorder writes them.

:meth:`EventRecorder.record` never blocks: it puts the event in a bounded
buffer (dropping, and counting, what does not fit — as upstream's
broadcaster drops when its queue is full) and a few workers write them
in the background, so Events never hold up scheduling. An event repeating
one already written (same object, type, reason and message) bumps that
Event's ``count`` and ``lastTimestamp`` with a PATCH instead of creating
another, as the EventCorrelator aggregates. Used by the scheduler (source
``default-scheduler``) and the controllers that tell users what they did
(workloads, node lifecycle, VMs), each under its own component name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubevisor.client import Client, ClientError, NotFoundError

if TYPE_CHECKING:
    from kubevisor.controllers.scheduler.transport import LeanPool

JSON = dict[str, Any]
log = logging.getLogger(__name__)

_Key = tuple[str, str, str, str, str, str]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(obj: Mapping[str, Any]) -> JSON:
    """The involvedObject of an Event about ``obj`` (a Pod)."""
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind") or "Pod", "apiVersion": obj.get("apiVersion") or "v1",
           "namespace": meta.get("namespace") or "", "name": meta.get("name") or "",
           "uid": meta.get("uid") or ""}
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    return ref


class EventRecorder:
    def __init__(self, client: Client, component: str, *, buffer: int = 10_000,
                 workers: int = 2, remember: int = 4096, lean: LeanPool | None = None) -> None:
        self.client = client
        self._lean = lean
        self.component = component
        self._queue: asyncio.Queue[tuple[JSON, str, str, str]] = asyncio.Queue(buffer)
        self._workers = workers
        self._seen: OrderedDict[_Key, tuple[str, int]] = OrderedDict()
        self._remember = remember
        self.dropped = 0
        self.written = 0

    def record(self, ref: JSON, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((ref, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1

    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for i in range(self._workers):
                group.create_task(self._worker(), name=f"events-{i}")

    async def _worker(self) -> None:
        while True:
            ref, type_, reason, message = await self._queue.get()
            try:
                await self.write(ref, type_, reason, message)
            except ClientError as exc:
                log.info("event %s for %s/%s not written: %s", reason, ref.get("namespace"),
                         ref.get("name"), exc)

    async def write(self, ref: JSON, type_: str, reason: str, message: str) -> None:
        """Create the Event, or bump the count of the one it repeats."""
        key = (ref["namespace"], ref["name"], ref.get("uid", ""), type_, reason, message)
        stamp = _now()
        seen = self._seen.get(key)
        if seen is not None:
            name, count = seen
            with contextlib.suppress(NotFoundError):
                await self._send("PATCH", f"{self._events(ref)}/{name}",
                                 {"count": count + 1, "lastTimestamp": stamp})
                self._remember_event(key, name, count + 1)
                self.written += 1
                return
        name = f"{ref['name']}.{time.time_ns():x}"
        await self._send("POST", self._events(ref), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ref["namespace"]},
            "involvedObject": ref, "reason": reason, "message": message, "type": type_,
            "source": {"component": self.component}, "firstTimestamp": stamp,
            "lastTimestamp": stamp, "count": 1, "reportingComponent": self.component,
            "reportingInstance": self.component,
        })
        self._remember_event(key, name, 1)
        self.written += 1

    @staticmethod
    def _events(ref: JSON) -> str:
        return f"/api/v1/namespaces/{ref['namespace']}/events"

    async def _send(self, method: str, path: str, body: JSON) -> None:
        ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
        if self._lean is not None:
            await self._lean.request(method, path, body, content_type=ctype)
        else:
            await self.client.request(method, path, body=body, content_type=ctype)

    def _remember_event(self, key: _Key, name: str, count: int) -> None:
        self._seen[key] = (name, count)
        self._seen.move_to_end(key)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
