"""Starting one container of a pod, as kubelet does it, for the pod worker.

:func:`start_container` gathers what the container needs (the ConfigMaps,
Secrets and Services it refers to, its volumes, the image, its
environment and command, its user, the pod's /etc files), builds the
runtime's :class:`~kubevisor.runtime.types.ContainerSpec` and runs it,
posting kubelet's events (Pulling, Pulled, Created, Started, Failed,
FailedMount, ...). A failure is remembered on the worker
(:meth:`PodWorker._fail`) and shown as a waiting reason until its back-off
ends; nothing is left half made. Then the postStart hook runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevisor.client import ClientError, NotFoundError
from kubevisor.node import env as envs
from kubevisor.node import volumes
from kubevisor.node.containers import Identity
from kubevisor.node.dns.resolvconf import pod_dns, read_pod_host_resolv
from kubevisor.node.plan import StartContainer
from kubevisor.node.pullsecrets import pull_policy, registry_auth
from kubevisor.runtime.errors import ImageError, RuntimeFailure
from kubevisor.runtime.types import ContainerSpec, Image

if TYPE_CHECKING:
    from kubevisor.node.worker import PodWorker

JSON = dict[str, Any]
POST_START_TIMEOUT = 30.0


async def sources(w: PodWorker, pod: JSON) -> envs.Sources:
    ns = pod["metadata"]["namespace"]
    cms, secrets = envs.references(pod)
    c = w.m.client

    async def fetch(kind: str, name: str) -> tuple[str, JSON | None]:
        try:
            obj = await c.get("v1", kind, name, namespace=ns)
            obj.setdefault("kind", kind)
            return name, obj
        except NotFoundError:
            return name, None

    got_cm = await asyncio.gather(*(fetch("ConfigMap", n) for n in cms if n))
    got_s = await asyncio.gather(*(fetch("Secret", n) for n in secrets if n))
    services, master = await w.m.services_for(ns)
    net = w.m.networks.get(w.uid)
    return envs.Sources(configmaps={n: o for n, o in got_cm if o is not None},
                        secrets={n: o for n, o in got_s if o is not None},
                        services=services, master_services=master,
                        pod_ip=net.ip if net else "", host_ip=w.m.host_ip)


async def pull_image(w: PodWorker, pod: JSON, c: JSON, *, init: bool) -> Image | None:
    m = w.m
    ref = str(c.get("image", ""))
    name = c["name"]
    policy = pull_policy(c)
    try:
        have = m.images.get(ref)
    except ImageError as exc:
        msg = f'Failed to apply default image tag "{ref}": {exc}'
        await m.events.emit(pod, "Warning", "InspectFailed", msg, container=name,
                            init=init)
        w._fail(name, "InvalidImageName", msg, image=ref)
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
        w._fail(name, "ErrImageNeverPull", msg, image=ref)
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
        w._fail(name, "ErrImagePull", msg, image=ref)
        return None
    took = time.monotonic() - started
    await m.events.emit(pod, "Normal", "Pulled",
                        f'Successfully pulled image "{ref}" in {go_duration(took)} '
                        f'({go_duration(took)} including waiting). '
                        f'Image size: {image.size} bytes.',
                        container=name, init=init)
    return image


async def resolv_conf(w: PodWorker, pod: JSON) -> str:
    """The pod's resolv.conf (dnsPolicy, dnsConfig, the cluster DNS);
    limits kubelet applies become DNSConfigForming events."""
    cfg = w.m.config
    host = await asyncio.to_thread(read_pod_host_resolv)
    dns = pod_dns(pod, nameserver=cfg.cluster_dns, zone=cfg.cluster_domain, host=host)
    for warning in dns.warnings:
        await w.m.events.emit(pod, "Warning", "DNSConfigForming", warning)
    return dns.render()


async def start_container(w: PodWorker, pod: JSON, action: StartContainer) -> None:
    m = w.m
    spec = pod.get("spec") or {}
    c = next(x for x in (spec.get("initContainers" if action.init else "containers") or [])
             if x["name"] == action.name)
    net = m.networks.get(w.uid)
    assert net is not None, "the planner starts containers only once the network exists"
    src = await sources(w, pod)
    try:
        paths = await asyncio.to_thread(
            volumes.setup_volumes, pod, src, data_dir=m.config.data_dir,
            token=m.config.token, ca_pem=m.config.ca_pem)
    except volumes.MountError as exc:
        await m.events.emit(pod, "Warning", "FailedMount",
                            f"MountVolume.SetUp failed: {exc}")
        w._fail(action.name, "ContainerCreating", "")
        return
    w._volumes_at = m.clock()
    image = await pull_image(w, pod, c, init=action.init)
    if image is None:
        return
    ident = Identity(pod_uid=w.uid, namespace=pod["metadata"]["namespace"],
                     pod_name=pod["metadata"]["name"], name=action.name,
                     attempt=action.attempt, init=action.init, crashes=action.crashes,
                     image=str(c.get("image", "")), image_id=_image_id(image))
    rootfs_dir = w._rootfs(ident.id)
    try:
        env = envs.container_env(pod, c, src, image=image.config)
        argv = envs.command(c, image.config, env)
    except envs.ConfigError as exc:
        await m.events.emit(pod, "Warning", "Failed", f"Error: {exc}",
                            container=action.name, init=action.init)
        w._fail(action.name, "CreateContainerConfigError", str(exc))
        return
    pod_root = volumes.pod_dir(m.config.data_dir, w.uid)
    etc = pod_root / "etc"
    resolv = await resolv_conf(w, pod)
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
            w._fail(action.name, "CreateContainerConfigError", str(exc))
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
        w._known.add(cspec.id)
        await m.runtime.run(cspec)
    except RuntimeFailure as exc:
        w._known.discard(ident.id)
        with contextlib.suppress(RuntimeFailure):
            await m.images.release_rootfs(str(rootfs_dir))
        await m.events.emit(pod, "Warning", "Failed", f"Error: {exc}",
                            container=action.name, init=action.init)
        w._fail(action.name, "RunContainerError", str(exc))
        return
    w._memo.failures.pop(action.name, None)
    await m.events.emit(pod, "Normal", "Started", f"Started container {action.name}",
                        container=action.name, init=action.init)
    await post_start(w, pod, c, ident.id, init=action.init)


async def post_start(w: PodWorker, pod: JSON, c: JSON, cid: str, *, init: bool) -> None:
    """Run the postStart exec hook; a failure kills the container (kubelet's
    FailedPostStartHook), which then restarts by its policy."""
    hook = ((c.get("lifecycle") or {}).get("postStart") or {}).get("exec")
    if not hook:
        return
    try:
        proc = await w.m.runtime.exec(cid, hook.get("command") or [])
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
    await w.m.events.emit(pod, "Warning", "FailedPostStartHook",
                             f"PostStartHook failed: {why}", container=c["name"], init=init)
    with contextlib.suppress(RuntimeFailure):
        await w.m.runtime.stop(cid, grace_seconds=0)


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
