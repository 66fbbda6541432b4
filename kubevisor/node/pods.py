"""The pods bound to this node: an informer, one worker per pod uid.

:class:`PodManager` watches Pods with ``fieldSelector
spec.nodeName=<node>`` and keeps one :class:`~kubevisor.node.worker.PodWorker`
task per pod uid, woken on every change. At start it lists what the
runtime and the network already hold (containers labelled with a pod
uid, pod namespaces) and, once the informer has synced, starts a worker
for each of those too: a pod still in the API is re-adopted as it runs
(restartCount unchanged), a pod that is gone is torn down (orphans).
Every second it relists the containers (kubelet's PLEG) and wakes the
workers of pods whose containers changed (an exit, say). Workers hand
statuses to the :class:`~kubevisor.node.statusmanager.StatusManager` and
events to the :class:`~kubevisor.node.events.EventRecorder`, whose few
senders this manager runs: no worker waits on the API for either.
Started by :func:`kubevisor.node.agent.run_node`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from kubevisor.client import Client, ClientError, Informer
from kubevisor.node.clock import Clock, wall
from kubevisor.node.config import NodeConfig
from kubevisor.node.containers import by_pod
from kubevisor.node.events import EventRecorder
from kubevisor.node.probes import ProbeResults
from kubevisor.node.statusmanager import StatusManager
from kubevisor.node.worker import PodWorker
from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.types import (
    ContainerRuntime,
    ContainerState,
    ImageStore,
    PodNetwork,
    PodNetworkInfo,
)

JSON = dict[str, Any]
log = logging.getLogger(__name__)
PLEG_THRESHOLD_SECONDS = 180.0
STATUS_WRITERS = 8


def _rv(obj: JSON | None) -> int:
    """An object's resourceVersion as a number (-1 when absent or not a number)."""
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or -1)
    except ValueError:
        return -1


class PodManager:
    def __init__(self, client: Client, config: NodeConfig, *, runtime: ContainerRuntime,
                 images: ImageStore, network: PodNetwork, host_ip: str,
                 clock: Clock = wall, relist_seconds: float = 1.0) -> None:
        self.client = client
        self.config = config
        self.runtime = runtime
        self.images = images
        self.network = network
        self.host_ip = host_ip
        self.clock = clock
        self.runtime_name = runtime.capabilities.name
        self.events = EventRecorder(client, config.node_name, clock=clock)
        self.statuses = StatusManager(client, writers=STATUS_WRITERS,
                                      on_written=self.pod_updated)
        self.results = ProbeResults()
        #: uid -> the newest Pod seen (absent: gone from the API).
        self.pods: dict[str, JSON] = {}
        self.networks: dict[str, PodNetworkInfo] = {}
        self.workers: dict[str, PodWorker] = {}
        self._finalized: set[str] = set()
        self.informer = Informer(client, "v1", "Pod",
                                 field_selector=f"spec.nodeName={config.node_name}")
        self.informer.add_handler(self._on_event)
        #: Services of every namespace, for the service-link env vars.
        self.services = Informer(client, "v1", "Service")
        self._started = False
        #: The last relist: pod uid -> container id -> state.
        self.index: dict[str, dict[str, ContainerState]] = {}
        self.relist_seconds = relist_seconds
        #: hostNetwork pods join the agent's own network namespace.
        self.host_netns = f"/proc/{os.getpid()}/ns/net"
        #: ``await drain(pod_ip, timeout)`` returns once this node's service
        #: proxy no longer routes to the pod (set by run_node when the node
        #: has a proxy): a deleted pod's containers are stopped after it.
        self.drain: Callable[[str, float], Awaitable[bool]] | None = None
        self._relisted_at = clock()

    def _on_event(self, etype: str, obj: JSON, old: JSON | None) -> None:
        uid = (obj.get("metadata") or {}).get("uid")
        if not uid:
            return
        if etype == "DELETED":
            self.pods.pop(uid, None)
            self.statuses.forget(uid)
        elif uid not in self._finalized:
            cached = self.pods.get(uid)
            if cached is None or _rv(obj) >= _rv(cached) or _rv(obj) < 0:
                self.pods[uid] = obj
        if self._started:
            self.poke(uid)

    async def services_for(self, namespace: str) -> tuple[list[JSON], list[JSON]]:
        """(Services of ``namespace``, the ``kubernetes`` Service of default),
        from the cache once it has synced, else asked of the API."""
        if not self.services.synced.is_set():
            try:
                own = (await self.client.list("v1", "Service", namespace=namespace)
                       ).get("items") or []
                dflt = own if namespace == "default" else (await self.client.list(
                    "v1", "Service", namespace="default")).get("items") or []
            except ClientError:
                return [], []
        else:
            own = [s for s in self.services.items()
                   if s["metadata"].get("namespace") == namespace]
            dflt = [s for s in self.services.items()
                    if s["metadata"].get("namespace") == "default"]
        master = [s for s in dflt if s["metadata"].get("name") == "kubernetes"]
        return own, master

    def pod_updated(self, pod: JSON) -> None:
        """A pod as a status write answered it: kept when newer than the
        copy the watch brought (which may already be newer: a deletion)."""
        uid = pod["metadata"]["uid"]
        cached = self.pods.get(uid)
        if cached is not None and _rv(pod) > _rv(cached):
            self.pods[uid] = pod

    def forget(self, uid: str) -> None:
        """The pod was finalized: treat it as gone even before the watch says so."""
        self._finalized.add(uid)
        self.pods.pop(uid, None)
        self.statuses.forget(uid)
        self.poke(uid)

    def poke(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is None or worker.task is None or worker.task.done():
            worker = PodWorker(self, uid)
            self.workers[uid] = worker
            worker.task = asyncio.get_running_loop().create_task(
                self._run_worker(worker), name=f"pod-{uid}")
        worker.wake.set()

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
            self._finalized.discard(worker.uid)

    @staticmethod
    def _summary(states: dict[str, ContainerState]) -> dict[str, tuple[str, int | None]]:
        return {cid: (s.status, s.exit_code) for cid, s in states.items()}

    async def relist(self) -> set[str]:
        """Read every container (kubelet's PLEG relist); wake the workers of
        pods whose containers changed; returns their uids."""
        fresh: dict[str, dict[str, ContainerState]] = {}
        for uid, states in by_pod(await self.runtime.list()).items():
            fresh[uid] = {s.id: s for s in states}
        changed = {uid for uid in {*fresh, *self.index}
                   if self._summary(fresh.get(uid, {})) != self._summary(self.index.get(uid, {}))}
        self.index = fresh
        self._relisted_at = self.clock()
        if self._started:
            for uid in changed:
                self.poke(uid)
        return changed

    def health(self) -> str | None:
        """Why the node is not ready (None: it is): kubelet's PLEG check."""
        ago = self.clock() - self._relisted_at
        if ago > PLEG_THRESHOLD_SECONDS:
            return (f"PLEG is not healthy: pleg was last seen active {int(ago)}s ago; "
                    f"threshold is {int(PLEG_THRESHOLD_SECONDS)}s")
        return None

    async def _relist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.relist_seconds)
            try:
                await self.relist()
            except RuntimeFailure as exc:
                log.warning("node %s: relisting containers failed: %s",
                            self.config.node_name, exc)

    async def run(self) -> None:
        """Re-adopt, then follow the API and the runtime until cancelled."""
        self.networks.update(await self.network.list_pods())
        await self.relist()
        informer = asyncio.create_task(self.informer.run(), name="pod-informer")
        services = asyncio.create_task(self.services.run(), name="pod-services")
        senders = [asyncio.create_task(self.statuses.run(), name="pod-status-writers"),
                   asyncio.create_task(self.events.run(), name="event-senders")]
        pleg: asyncio.Task[None] | None = None
        try:
            await self.informer.synced.wait()
            self._started = True
            for uid in {*self.pods, *self.index, *self.networks}:
                self.poke(uid)
            log.info("node %s: %d pods bound, %d found on the host",
                     self.config.node_name, len(self.pods), len(self.index))
            pleg = asyncio.create_task(self._relist_loop(), name="pod-relist")
            await asyncio.gather(informer, pleg, *senders)
        finally:
            workers = [w.task for w in self.workers.values() if w.task is not None]
            tasks = [t for t in (informer, services, pleg, *senders, *workers)
                     if t is not None]
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
