"""Events about pods (and VirtualMachines), posted as kubelet posts them
(core/v1 Event, source ``kubelet``/<node>, reportingController
``kubelet``; the VM runner's recorder names itself ``kubevisor-node``).

:func:`event_object` builds one (pure). :class:`EventRecorder` posts it,
and for a repeat of the same (object, fieldPath, reason, message) bumps
``count`` and ``lastTimestamp`` of the event already posted, as kubelet's
correlator does. Failures are logged, never raised: an event is worth
less than the work it describes. Once :meth:`EventRecorder.run` runs,
:meth:`~EventRecorder.emit` only queues the event (a bounded queue; when
it is full the event is dropped and counted in ``dropped``) and a few
senders post it, so no pod worker waits on the API for an event. Used by
the pod worker and the prober.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from kubevisor.client import Client, ClientError
from kubevisor.node.clock import Clock, micro, rfc3339, wall

JSON = dict[str, Any]
log = logging.getLogger(__name__)


def field_path(container: str | None, *, init: bool = False) -> str | None:
    if container is None:
        return None
    return f"spec.{'initContainers' if init else 'containers'}{{{container}}}"


def event_object(pod: JSON, *, type: str, reason: str, message: str, node: str,
                 now: float, field_path: str | None = None, component: str = "kubelet") -> JSON:
    """The Event about ``pod`` (or any object whose apiVersion and kind it carries)."""
    md = pod.get("metadata") or {}
    involved: JSON = {"apiVersion": pod.get("apiVersion") or "v1",
                      "kind": pod.get("kind") or "Pod", "namespace": md.get("namespace"),
                      "name": md.get("name"), "uid": md.get("uid"),
                      "resourceVersion": md.get("resourceVersion")}
    if field_path:
        involved["fieldPath"] = field_path
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{md.get('name')}.{int(now * 1e9):x}",
                     "namespace": md.get("namespace")},
        "involvedObject": involved, "reason": reason, "message": message,
        "source": {"component": component, "host": node},
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1, "type": type,
        "eventTime": None, "reportingComponent": component, "reportingInstance": node,
    }


_Queued = tuple[JSON, str, str, str, str | None, bool, float]


class EventRecorder:
    def __init__(self, client: Client, node: str, *, clock: Clock = wall,
                 queue_size: int = 1000, senders: int = 2, component: str = "kubelet") -> None:
        self.client = client
        self.node = node
        self.component = component
        self._clock = clock
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int]] = {}
        self._queue: deque[_Queued] = deque()
        self._queue_size = queue_size
        self._senders = senders
        self._ready = asyncio.Event()
        self._running = False
        #: Events dropped because the queue was full.
        self.dropped = 0

    async def emit(self, pod: JSON, type: str, reason: str, message: str, *,
                   container: str | None = None, init: bool = False) -> None:
        """Queue the event when the senders run (never waits), else post it."""
        now = self._clock()
        if not self._running:
            await self.post(pod, type, reason, message, container=container, init=init,
                            now=now)
            return
        if len(self._queue) >= self._queue_size:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("events: queue full, %d dropped so far", self.dropped)
            return
        self._queue.append((pod, type, reason, message, container, init, now))
        self._ready.set()

    async def run(self) -> None:
        """Post queued events until cancelled."""
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(self._senders):
                    group.create_task(self._sender(), name=f"event-sender-{i}")
        finally:
            self._running = False

    async def _sender(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            pod, type, reason, message, container, init, now = self._queue.popleft()
            await self.post(pod, type, reason, message, container=container, init=init,
                            now=now)

    async def post(self, pod: JSON, type: str, reason: str, message: str, *,
                   container: str | None = None, init: bool = False,
                   now: float | None = None) -> None:
        """Post (or bump the count of) one event now."""
        md = pod.get("metadata") or {}
        path = field_path(container, init=init)
        key = (str(md.get("uid")), path or "", reason, message)
        now = self._clock() if now is None else now
        try:
            seen = self._seen.get(key)
            if seen is not None:
                ns, name, count = seen
                await self.client.patch("v1", "Event", name, namespace=ns, patch={
                    "count": count + 1, "lastTimestamp": rfc3339(now)})
                self._seen[key] = (ns, name, count + 1)
                return
            body = event_object(pod, type=type, reason=reason, message=message,
                                node=self.node, now=now, field_path=path,
                                component=self.component)
            created = await self.client.create(body)
            cmd = created.get("metadata") or {}
            self._seen[key] = (cmd.get("namespace", ""), cmd.get("name", ""), 1)
            if len(self._seen) > 4096:
                self._seen.pop(next(iter(self._seen)))
        except ClientError as exc:
            self._seen.pop(key, None)
            log.info("event %s %s for %s/%s not posted: %s", reason, micro(now),
                     md.get("namespace"), md.get("name"), exc)

    def forget(self, pod_uid: str) -> None:
        for key in [k for k in self._seen if k[0] == pod_uid]:
            del self._seen[key]
