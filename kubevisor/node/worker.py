"""One pod's worker: observes, plans, applies, reports (the shell of
:func:`kubevisor.node.plan.plan`).

:class:`PodWorker` runs as one task per pod uid, woken by the pod manager
(pod changed), by a probe result, by the end of a stop, or by the
planner's ``requeue_after``. Each sync reads what the runtime has for the
pod, plans, applies the actions through the drivers (stops run in the
background: they last up to the grace period), then writes the status
through ``pods/<name>/status`` when it changed. Failures to start a
container are remembered with a back-off (ErrImagePull →
ImagePullBackOff, CreateContainerConfigError, RunContainerError) and
shown as waiting states. Events as kubelet posts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevisor.client import ClientError, ConflictError, NotFoundError
from kubevisor.node import env as envs
from kubevisor.node import volumes
from kubevisor.node.containers import Identity, identity, observe
from kubevisor.node.dns.resolvconf import pod_dns, read_pod_host_resolv
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
from kubevisor.node.pullsecrets import pull_policy, registry_auth
from kubevisor.runtime.errors import ImageError, RuntimeFailure
from kubevisor.runtime.types import ContainerSpec, Image, PodNetworkInfo

if TYPE_CHECKING:
    from kubevisor.node.pods import PodManager

JSON = dict[str, Any]
log = logging.getLogger(__name__)
PULL_BACKOFF = (10.0, 300.0)
CONFIG_RETRY_SECONDS = 5.0
MAX_ROUNDS = 8
POST_START_TIMEOUT = 30.0


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
        self._written: Any = None
        self._known: set[str] = set()
        self._volumes_at = 0.0
        self.task: asyncio.Task[None] | None = None

    # -- loop ---------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
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

    async def _loop(self) -> None:
        timeout: float | None = None
        while True:
            if timeout is None:
                await self.wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            self.wake.clear()
            try:
                timeout, finished = await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod %s: sync failed", self.uid)
                timeout, finished = 2.0, False
            if finished:
                return

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
        src = await self._sources(pod)
        try:
            await asyncio.to_thread(volumes.setup_volumes, pod, src,
                                    data_dir=self.m.config.data_dir, token=self.m.config.token,
                                    ca_pem=self.m.config.ca_pem)
        except volumes.MountError as exc:
            log.info("pod %s: volume refresh: %s", self.uid, exc)

    # -- status -------------------------------------------------------------

    async def write_status(self, pod: JSON, state: PodState, now: float) -> None:
        status = pod_status(pod, state, now=now, host_ip=self.m.host_ip,
                            runtime_name=self.m.runtime_name)
        if normalized(status) in (normalized(pod.get("status")), self._written):
            return
        body = copy.deepcopy(pod)
        body["status"] = status
        try:
            updated = await self.m.client.update_status(body)
        except ConflictError:
            self.wake.set()  # the informer brings the newer pod; try again with it
            return
        except NotFoundError:
            return
        self._written = normalized(status)
        self.m.pod_updated(updated)
        await self._backoff_events(pod, status)

    async def _backoff_events(self, pod: JSON, status: JSON) -> None:
        """BackOff events when a container enters a back-off, as kubelet posts them."""
        old = {s.get("name"): s for s in [
            *((pod.get("status") or {}).get("initContainerStatuses") or []),
            *((pod.get("status") or {}).get("containerStatuses") or [])]}
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
            await self.start_container(pod, state, action)
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

    async def _resolv_conf(self, pod: JSON) -> str:
        """The pod's resolv.conf (dnsPolicy, dnsConfig, the cluster DNS);
        limits kubelet applies become DNSConfigForming events."""
        cfg = self.m.config
        host = await asyncio.to_thread(read_pod_host_resolv)
        dns = pod_dns(pod, nameserver=cfg.cluster_dns, zone=cfg.cluster_domain, host=host)
        for warning in dns.warnings:
            await self.m.events.emit(pod, "Warning", "DNSConfigForming", warning)
        return dns.render()

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

    async def _sources(self, pod: JSON) -> envs.Sources:
        ns = pod["metadata"]["namespace"]
        cms, secrets = envs.references(pod)
        c = self.m.client

        async def fetch(kind: str, name: str) -> tuple[str, JSON | None]:
            try:
                obj = await c.get("v1", kind, name, namespace=ns)
                obj.setdefault("kind", kind)
                return name, obj
            except NotFoundError:
                return name, None

        got_cm = await asyncio.gather(*(fetch("ConfigMap", n) for n in cms if n))
        got_s = await asyncio.gather(*(fetch("Secret", n) for n in secrets if n))
        services, master = await self.m.services_for(ns)
        net = self.m.networks.get(self.uid)
        return envs.Sources(configmaps={n: o for n, o in got_cm if o is not None},
                            secrets={n: o for n, o in got_s if o is not None},
                            services=services, master_services=master,
                            pod_ip=net.ip if net else "", host_ip=self.m.host_ip)

    async def _image(self, pod: JSON, c: JSON, *, init: bool) -> Image | None:
        m = self.m
        ref = str(c.get("image", ""))
        name = c["name"]
        policy = pull_policy(c)
        try:
            have = m.images.get(ref)
        except ImageError as exc:
            msg = f'Failed to apply default image tag "{ref}": {exc}'
            await m.events.emit(pod, "Warning", "InspectFailed", msg, container=name,
                                init=init)
            self._fail(name, "InvalidImageName", msg, image=ref)
            return None
        if have is not None and policy != "Always":
            await m.events.emit(pod, "Normal", "Pulled",
                                f'Container image "{ref}" already present on machine',
                                container=name, init=init)
            return have
        if policy == "Never":
            msg = f'Container image "{ref}" is not present with pull policy of Never'
            await m.events.emit(pod, "Warning", "ErrImageNeverPull", msg, container=name,
                                init=init)
            self._fail(name, "ErrImageNeverPull", msg, image=ref)
            return None
        await m.events.emit(pod, "Normal", "Pulling", f'Pulling image "{ref}"',
                            container=name, init=init)
        secrets = []
        ns = pod["metadata"]["namespace"]
        for s in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            with contextlib.suppress(ClientError):
                secrets.append(await m.client.get("v1", "Secret", s.get("name", ""),
                                                  namespace=ns))
        started = time.monotonic()
        try:
            image = await m.images.pull(ref, auth=registry_auth(secrets) or None)
        except ImageError as exc:
            msg = f'Failed to pull image "{ref}": {exc}'
            await m.events.emit(pod, "Warning", "Failed", msg, container=name, init=init)
            await m.events.emit(pod, "Warning", "Failed", "Error: ErrImagePull",
                                container=name, init=init)
            self._fail(name, "ErrImagePull", msg, image=ref)
            return None
        took = time.monotonic() - started
        await m.events.emit(pod, "Normal", "Pulled",
                            f'Successfully pulled image "{ref}" in {go_duration(took)} '
                            f'({go_duration(took)} including waiting). '
                            f'Image size: {image.size} bytes.',
                            container=name, init=init)
        return image

    async def start_container(self, pod: JSON, state: PodState, action: StartContainer) -> None:
        m = self.m
        spec = pod.get("spec") or {}
        c = next(x for x in (spec.get("initContainers" if action.init else "containers") or [])
                 if x["name"] == action.name)
        net = m.networks.get(self.uid)
        assert net is not None, "the planner starts containers only once the network exists"
        src = await self._sources(pod)
        try:
            paths = await asyncio.to_thread(
                volumes.setup_volumes, pod, src, data_dir=m.config.data_dir,
                token=m.config.token, ca_pem=m.config.ca_pem)
        except volumes.MountError as exc:
            await m.events.emit(pod, "Warning", "FailedMount",
                                f"MountVolume.SetUp failed: {exc}")
            self._fail(action.name, "ContainerCreating", "")
            return
        self._volumes_at = m.clock()
        image = await self._image(pod, c, init=action.init)
        if image is None:
            return
        ident = Identity(pod_uid=self.uid, namespace=pod["metadata"]["namespace"],
                         pod_name=pod["metadata"]["name"], name=action.name,
                         attempt=action.attempt, init=action.init, crashes=action.crashes,
                         image=str(c.get("image", "")), image_id=_image_id(image))
        rootfs_dir = self._rootfs(ident.id)
        try:
            env = envs.container_env(pod, c, src, image=image.config)
            argv = envs.command(c, image.config, env)
        except envs.ConfigError as exc:
            await m.events.emit(pod, "Warning", "Failed", f"Error: {exc}",
                                container=action.name, init=action.init)
            self._fail(action.name, "CreateContainerConfigError", str(exc))
            return
        pod_root = volumes.pod_dir(m.config.data_dir, self.uid)
        etc = pod_root / "etc"
        resolv = await self._resolv_conf(pod)
        await asyncio.to_thread(volumes.write_etc, pod, etc, pod_ip=net.ip, resolv_conf=resolv)
        rootfs_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            rootfs = await m.images.prepare_rootfs(image, str(rootfs_dir))
            try:
                passwd = _read(Path(rootfs) / "etc" / "passwd")
                group = _read(Path(rootfs) / "etc" / "group")
                uid, gid = envs.user(pod, c, image.config, passwd=passwd, group=group)
                envs.check_non_root(pod, c, uid)
                mounts = volumes.container_mounts(pod, c, paths, etc_dir=etc)
            except (envs.ConfigError, volumes.MountError) as exc:
                await m.images.release_rootfs(str(rootfs_dir))
                await m.events.emit(pod, "Warning", "Failed", f"Error: {exc}",
                                    container=action.name, init=action.init)
                self._fail(action.name, "CreateContainerConfigError", str(exc))
                return
            log_dir = pod_root / "logs" / action.name
            log_dir.mkdir(parents=True, exist_ok=True)
            cspec = ContainerSpec(
                id=ident.id, rootfs=rootfs, args=argv,
                log_path=str(log_dir / f"{action.attempt}.log"), env=env,
                cwd=c.get("workingDir") or image.config.working_dir or "/",
                uid=uid, gid=gid,
                hostname=spec.get("hostname") or pod["metadata"]["name"],
                netns=net.netns, mounts=mounts, resources=envs.resources(c),
                tty=bool(c.get("tty")), stdin=bool(c.get("stdin")), labels=ident.labels())
            await m.events.emit(pod, "Normal", "Created", f"Created container: {action.name}",
                                container=action.name, init=action.init)
            self._known.add(cspec.id)
            await m.runtime.run(cspec)
        except RuntimeFailure as exc:
            self._known.discard(ident.id)
            with contextlib.suppress(RuntimeFailure):
                await m.images.release_rootfs(str(rootfs_dir))
            await m.events.emit(pod, "Warning", "Failed", f"Error: {exc}",
                                container=action.name, init=action.init)
            self._fail(action.name, "RunContainerError", str(exc))
            return
        self._memo.failures.pop(action.name, None)
        await m.events.emit(pod, "Normal", "Started", f"Started container {action.name}",
                            container=action.name, init=action.init)
        await self._post_start(pod, c, ident.id, init=action.init)

    async def _post_start(self, pod: JSON, c: JSON, cid: str, *, init: bool) -> None:
        """Run the postStart exec hook; a failure kills the container (kubelet's
        FailedPostStartHook), which then restarts by its policy."""
        hook = ((c.get("lifecycle") or {}).get("postStart") or {}).get("exec")
        if not hook:
            return
        try:
            proc = await self.m.runtime.exec(cid, hook.get("command") or [])
            out: list[bytes] = []

            async def drain() -> int:
                while (chunk := await proc.read()) is not None:
                    out.append(chunk[1])
                return await proc.wait()
            code = await asyncio.wait_for(drain(), POST_START_TIMEOUT)
            if code == 0:
                return
            why = f"command {hook.get('command')!r} exited with {code}: " \
                  f"{b''.join(out).decode(errors='replace')[:512]}"
        except (TimeoutError, RuntimeFailure) as exc:
            why = str(exc) or "timed out"
        await self.m.events.emit(pod, "Warning", "FailedPostStartHook",
                                 f"PostStartHook failed: {why}", container=c["name"], init=init)
        with contextlib.suppress(RuntimeFailure):
            await self.m.runtime.stop(cid, grace_seconds=0)


def go_duration(seconds: float) -> str:
    """A duration as Go prints a time.Duration truncated to milliseconds
    (``512ms``, ``1.234s``, ``2m3.5s``), as kubelet words pull times."""
    ms = int(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes == 0:
        return secs
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}"


def _spec_images(pod: JSON | None) -> dict[str, str]:
    spec = (pod or {}).get("spec") or {}
    return {c["name"]: str(c.get("image", ""))
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}


def _file_volumes(pod: JSON) -> bool:
    return any(k in v for v in (pod.get("spec") or {}).get("volumes") or []
               for k in ("configMap", "secret", "downwardAPI", "projected"))


def _image_id(image: Image) -> str:
    repo = image.ref.split("@")[0]
    last = repo.rsplit("/", 1)
    if ":" in last[-1]:
        repo = repo[: repo.rfind(":")]
    return f"{repo}@{image.digest}" if image.digest else image.id


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""

