"""One pod's worker: observes, plans, applies, reports (the shell of
:func:`kubevisor.node.plan.plan`).

:class:`PodWorker` runs as one task per pod uid, woken by the pod manager
(pod changed), by a probe result, by the end of a stop, or by the
planner's ``requeue_after``. Each sync reads what the runtime has for the
pod, plans, applies the actions through the drivers (stops run in the
background: they last up to the grace period), then hands the status to
the status manager when it changed (the manager writes it; the worker
never waits on the API for it). Starting a container is
:mod:`kubevisor.node.starting`; its failures are remembered here with a
back-off (ErrImagePull → ImagePullBackOff, CreateContainerConfigError,
RunContainerError) and shown as waiting states. Events as kubelet posts
them. A deleted pod's containers get their SIGTERM once this node's
service proxy no longer routes to the pod (at most DRAIN_SECONDS, taken
from the grace period), so a rolling update loses no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevisor.client import ConflictError, NotFoundError
from kubevisor.node import starting, volumes
from kubevisor.node.containers import identity, observe
from kubevisor.node.plan import (
    Action,
    Finalize,
    KillContainer,
    ReleaseNetwork,
    RemoveContainer,
    SetupNetwork,
    StartContainer,
    TearDown,
    plan,
)
from kubevisor.node.podstate import Blocked, PodState
from kubevisor.node.podstatus import pod_status
from kubevisor.node.probes import ContainerProber
from kubevisor.node.syncloop import sync_until_finished
from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.types import PodNetworkInfo

if TYPE_CHECKING:
    from kubevisor.node.pods import PodManager

JSON = dict[str, Any]
log = logging.getLogger(__name__)
PULL_BACKOFF = (10.0, 300.0)
CONFIG_RETRY_SECONDS = 5.0
#: After a sync that raised.
SYNC_RETRY_SECONDS = 2.0
MAX_ROUNDS = 8
#: The longest a deleted pod's SIGTERM waits for the service rules to drop it.
DRAIN_SECONDS = 2.0


@dataclass(slots=True)
class Failure:
    reason: str
    message: str
    since: float
    count: int = 1
    image: str = ""


@dataclass(slots=True)
class _Memo:
    failures: dict[str, Failure] = field(default_factory=dict)  # container name -> failure
    stopping: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    probers: dict[str, ContainerProber] = field(default_factory=dict)


def normalized(value: Any) -> Any:
    """Drop None values and empty maps/lists so a status compares equal to
    itself after a round trip through the apiserver."""
    if isinstance(value, dict):
        out = {k: normalized(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


class PodWorker:
    def __init__(self, manager: PodManager, uid: str) -> None:
        self.m = manager
        self.uid = uid
        self.wake = asyncio.Event()
        self._memo = _Memo()
        #: The last status handed to the status manager (raw, normalized).
        self._handed: JSON | None = None
        self._handed_norm: Any = None
        self._known: set[str] = set()
        self._volumes_at = 0.0
        self.task: asyncio.Task[None] | None = None

    # -- loop ---------------------------------------------------------------

    async def run(self) -> None:
        try:
            await sync_until_finished(self.wake, self.sync, what=f"pod {self.uid}",
                                      retry=SYNC_RETRY_SECONDS)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop this worker's probes and background stops (containers keep
        running: a new agent re-adopts them)."""
        for prober in list(self._memo.probers.values()):
            await prober.stop()
        self._memo.probers.clear()
        for task in list(self._memo.stopping.values()):
            task.cancel()
        for task in list(self._memo.stopping.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._memo.stopping.clear()

    @property
    def pod(self) -> JSON | None:
        return self.m.pods.get(self.uid)

    async def observe(self) -> PodState:
        """The pod's containers (those of the last relist and those this
        worker made since), each read afresh."""
        states = []
        for cid in sorted({*self.m.index.get(self.uid, {}), *self._known}):
            st = await self.m.runtime.state(cid)
            if st is None:
                self._known.discard(cid)
            else:
                states.append(st)
        now = self.m.clock()
        images = _spec_images(self.pod)
        for name, f in list(self._memo.failures.items()):
            if f.image and images.get(name) != f.image:  # the spec moved on: retry now
                del self._memo.failures[name]
        blocked = {name: self._blocked(f, now) for name, f in self._memo.failures.items()}
        res = self.m.results
        return PodState(
            containers=observe(states, self.uid), network=self.m.networks.get(self.uid),
            blocked=blocked, ready=dict(res.ready), started=frozenset(res.started),
            unhealthy=dict(res.unhealthy), stopping=frozenset(self._memo.stopping))

    def _blocked(self, f: Failure, now: float) -> Blocked:
        if f.reason == "ErrImagePull":
            delay = min(PULL_BACKOFF[0] * 2 ** (f.count - 1), PULL_BACKOFF[1])
            if now - f.since >= 1.0:
                return Blocked("ImagePullBackOff", f'Back-off pulling image "{f.image}"',
                               f.since + delay)
            return Blocked(f.reason, f.message, f.since + delay)
        if f.reason == "ErrImageNeverPull":
            return Blocked(f.reason, f.message, f.since + PULL_BACKOFF[0])
        return Blocked(f.reason, f.message, f.since + CONFIG_RETRY_SECONDS * min(f.count, 6))

    async def sync(self) -> tuple[float | None, bool]:
        """One round; (seconds until the next look or None, worker finished)."""
        for _ in range(MAX_ROUNDS):
            state = await self.observe()
            pod = self.pod
            now = self.m.clock()
            p = plan(pod, state, now)
            await self._sync_probers(pod, state)
            if not p.actions:
                if pod is not None:
                    await self.write_status(pod, state, now)
                pending_pull = [f for f in self._memo.failures.values()
                                if f.reason == "ErrImagePull" and now - f.since < 1.0]
                timeout = p.requeue_after
                if pending_pull:
                    timeout = min(timeout or 1.0, 1.0)
                if pod is not None and self._volumes_at and _file_volumes(pod) \
                        and not (pod.get("metadata") or {}).get("deletionTimestamp"):
                    every = self.m.config.volume_resync_seconds
                    if now - self._volumes_at >= every:
                        await self._refresh_volumes(pod)
                    timeout = min(timeout or every, every)
                finished = pod is None and not state.containers and state.network is None \
                    and not self._memo.stopping
                return timeout, finished
            if pod is not None:
                await self.write_status(pod, state, now)
            for action in p.actions:
                await self.apply(pod, state, action)
        return 0.5, False

    async def _refresh_volumes(self, pod: JSON) -> None:
        """Rewrite configMap/secret/downwardAPI/projected files whose sources
        changed (kubelet's periodic volume sync)."""
        self._volumes_at = self.m.clock()
        src = await starting.sources(self, pod)
        try:
            await asyncio.to_thread(volumes.setup_volumes, pod, src,
                                    data_dir=self.m.config.data_dir, token=self.m.config.token,
                                    ca_pem=self.m.config.ca_pem)
        except volumes.MountError as exc:
            log.info("pod %s: volume refresh: %s", self.uid, exc)

    # -- status -------------------------------------------------------------

    async def write_status(self, pod: JSON, state: PodState, now: float) -> None:
        """Hand the pod's status to the status manager when it changed. The
        status is computed over the last one handed over (the API's copy
        may not show it yet), as kubelet's status manager caches it."""
        base = self._handed if self._handed is not None else pod.get("status")
        view = pod if self._handed is None else {**pod, "status": self._handed}
        status = pod_status(view, state, now=now, host_ip=self.m.host_ip,
                            runtime_name=self.m.runtime_name)
        norm = normalized(status)
        if norm == self._handed_norm or (self._handed is None
                                         and norm == normalized(pod.get("status"))):
            return
        self.m.statuses.set(pod, status)
        self._handed, self._handed_norm = status, norm
        await self._backoff_events(pod, base or {}, status)

    async def _backoff_events(self, pod: JSON, before_status: JSON, status: JSON) -> None:
        """BackOff events when a container enters a back-off, as kubelet posts them."""
        old = {s.get("name"): s for s in [
            *(before_status.get("initContainerStatuses") or []),
            *(before_status.get("containerStatuses") or [])]}
        for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
            for st in status.get(key) or []:
                reason = ((st.get("state") or {}).get("waiting") or {}).get("reason")
                before = (((old.get(st["name"]) or {}).get("state") or {}).get("waiting")
                          or {}).get("reason")
                if reason == before:
                    continue
                if reason == "CrashLoopBackOff":
                    md = pod["metadata"]
                    await self.m.events.emit(
                        pod, "Warning", "BackOff",
                        f"Back-off restarting failed container {st['name']} in pod "
                        f"{md['name']}_{md['namespace']}({md['uid']})",
                        container=st["name"], init=init)
                elif reason == "ImagePullBackOff":
                    await self.m.events.emit(pod, "Normal", "BackOff",
                                             f'Back-off pulling image "{st.get("image")}"',
                                             container=st["name"], init=init)
                    await self.m.events.emit(pod, "Warning", "Failed",
                                             "Error: ImagePullBackOff",
                                             container=st["name"], init=init)

    # -- probes -------------------------------------------------------------

    async def _sync_probers(self, pod: JSON | None, state: PodState) -> None:
        running = {s.id: s for items in state.containers.values() for s in items
                   if s.status == "running" and s.id not in state.stopping}
        for cid in [c for c in self._memo.probers if c not in running]:
            await self._memo.probers.pop(cid).stop()
            self.m.results.forget(cid)
        if pod is None or state.network is None:
            return
        specs = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
        for cid, s in running.items():
            ident = identity(s)
            c = specs.get(ident.name) if ident else None
            if cid in self._memo.probers or c is None or ident is None or ident.init:
                continue
            if not any(c.get(k) for k in ("livenessProbe", "readinessProbe", "startupProbe")):
                continue
            name = ident.name

            async def on_event(reason: str, message: str, name: str = name) -> None:
                current = self.pod
                if current is not None:
                    await self.m.events.emit(current, "Warning", reason, message,
                                             container=name)

            prober = ContainerProber(runtime=self.m.runtime, container_id=cid, container=c,
                                     pod_ip=state.network.ip, results=self.m.results,
                                     on_change=self.wake.set, on_event=on_event)
            self._memo.probers[cid] = prober
            prober.start()

    # -- actions ------------------------------------------------------------

    async def apply(self, pod: JSON | None, state: PodState, action: Action) -> None:
        m = self.m
        if isinstance(action, SetupNetwork):
            if pod is not None and (pod.get("spec") or {}).get("hostNetwork"):
                m.networks[self.uid] = PodNetworkInfo(netns=m.host_netns, ip=m.host_ip,
                                                      gateway="", prefix_len=0)
            else:
                try:
                    m.networks[self.uid] = await m.network.setup_pod(self.uid)
                except RuntimeFailure as exc:
                    if pod is not None:
                        await m.events.emit(pod, "Warning", "FailedCreatePodSandBox",
                                            f"Failed to create pod sandbox: {exc}")
                    raise
        elif isinstance(action, StartContainer):
            assert pod is not None
            await starting.start_container(self, pod, action)
        elif isinstance(action, KillContainer):
            self._memo.stopping[action.id] = asyncio.get_running_loop().create_task(
                self.kill(pod, action))
        elif isinstance(action, RemoveContainer):
            await m.runtime.remove(action.id)
            self._known.discard(action.id)
            await m.images.release_rootfs(str(self._rootfs(action.id)))
        elif isinstance(action, ReleaseNetwork):
            await m.network.teardown_pod(self.uid)
            m.networks.pop(self.uid, None)
        elif isinstance(action, TearDown):
            await self.teardown(state)
        elif isinstance(action, Finalize):
            assert pod is not None
            md = pod["metadata"]
            try:
                await m.client.delete("v1", "Pod", md["name"], namespace=md["namespace"],
                                      grace_period_seconds=0,
                                      preconditions={"uid": self.uid})
            except (NotFoundError, ConflictError):
                pass
            m.forget(self.uid)


    def _rootfs(self, cid: str) -> Path:
        return volumes.pod_dir(self.m.config.data_dir, self.uid) / "containers" / cid / "rootfs"

    async def kill(self, pod: JSON | None, action: KillContainer) -> None:
        m = self.m
        cid = action.id
        try:
            if pod is not None:
                await m.events.emit(pod, "Normal", "Killing",
                                    action.reason or f"Stopping container {action.name}",
                                    container=action.name)
            started = time.monotonic()
            grace = action.grace
            if pod is not None and grace > 0 and (pod.get("metadata") or {}).get("deletionTimestamp"):
                await self._drain(min(grace, DRAIN_SECONDS))
                grace = max(grace - (time.monotonic() - started), 0.0)
            if pod is not None and grace > 0:
                await self._pre_stop(pod, action.name, cid, grace)
                grace = max(grace - (time.monotonic() - started), 0.0)
            prober = self._memo.probers.pop(cid, None)
            if prober is not None:
                await prober.stop()
            await m.runtime.stop(cid, grace_seconds=grace)
            m.results.forget(cid)
        except RuntimeFailure as exc:
            log.warning("pod %s: stopping %s failed: %s", self.uid, cid, exc)
        finally:
            self._memo.stopping.pop(cid, None)
            self.wake.set()

    async def _drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until this node's service proxy stops
        sending new connections to the deleted pod: the Endpoints controller
        drops a terminating pod at once, but the rules follow a moment later,
        and a server that exits on SIGTERM meanwhile refuses what is still
        routed to it. Pods on the host network are not waited for."""
        net = self.m.networks.get(self.uid)
        if self.m.drain is None or net is None or not net.ip or net.ip == self.m.host_ip:
            return
        if not await self.m.drain(net.ip, timeout):
            log.info("pod %s: service rules still route to %s after %.1fs; stopping anyway",
                     self.uid, net.ip, timeout)

    async def _pre_stop(self, pod: JSON, name: str, cid: str, grace: float) -> None:
        c = next((c for c in (pod.get("spec") or {}).get("containers") or []
                  if c.get("name") == name), None)
        hook = ((c or {}).get("lifecycle") or {}).get("preStop") or {}
        try:
            if "exec" in hook:
                proc = await self.m.runtime.exec(cid, hook["exec"].get("command") or [])

                async def drain() -> None:
                    while await proc.read() is not None:
                        pass
                    await proc.wait()
                await asyncio.wait_for(drain(), grace)
            elif "sleep" in hook:
                await asyncio.sleep(min(float(hook["sleep"].get("seconds", 0)), grace))
            elif "httpGet" in hook:
                from kubevisor.node.probes import run_probe
                net = self.m.networks.get(self.uid)
                await run_probe({"httpGet": hook["httpGet"], "timeoutSeconds": grace},
                                runtime=self.m.runtime, container_id=cid, container=c or {},
                                pod_ip=net.ip if net else "")
        except (TimeoutError, RuntimeFailure) as exc:
            await self.m.events.emit(pod, "Warning", "FailedPreStopHook",
                                     f"PreStopHook failed: {exc}", container=name)

    async def teardown(self, state: PodState) -> None:
        m = self.m
        for cid in list(self._memo.probers):
            await self._memo.probers.pop(cid).stop()
        for items in state.containers.values():
            for s in items:
                if s.status != "stopped":
                    with contextlib.suppress(RuntimeFailure):
                        await m.runtime.stop(s.id, grace_seconds=0)
                await m.runtime.remove(s.id)
                self._known.discard(s.id)
                await m.images.release_rootfs(str(self._rootfs(s.id)))
                m.results.forget(s.id)
        await m.network.teardown_pod(self.uid)
        m.networks.pop(self.uid, None)
        await asyncio.to_thread(volumes.teardown_volumes, m.config.data_dir, self.uid)
        m.events.forget(self.uid)
        self._memo.failures.clear()

    # -- starting a container -----------------------------------------------

    def _fail(self, name: str, reason: str, message: str, *, image: str = "") -> None:
        old = self._memo.failures.get(name)
        count = old.count + 1 if old is not None and old.reason == reason else 1
        self._memo.failures[name] = Failure(reason, message, self.m.clock(), count, image)






def _spec_images(pod: JSON | None) -> dict[str, str]:
    spec = (pod or {}).get("spec") or {}
    return {c["name"]: str(c.get("image", ""))
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}


def _file_volumes(pod: JSON) -> bool:
    return any(k in v for v in (pod.get("spec") or {}).get("volumes") or []
               for k in ("configMap", "secret", "downwardAPI", "projected"))

