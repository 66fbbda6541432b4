"""``kubevisor bench pods``: pod start latency, burst and density on this host.

Called by :mod:`kubevisor.cli.bench`. Starts its own ``kubevisor up`` (a
child process running :func:`kubevisor.cli.up.run_up`: apiserver,
controller manager, node agent) in a temporary data dir, with a network
of its own (a random name prefix for bridge, netns, veths and nft tables,
a free pod CIDR, its own cgroup parent), imports a busybox image
(:func:`kubevisor.cli.benchhost.busybox_archive`) into the node's store,
then runs the phases, each optional:

``baseline``
    The raw OCI start of the same container (busybox rootfs from the same
    image store, ``sleep 3600``) through :mod:`kubevisor.runtime.oci`
    directly, one after another.
``latency``
    Pods created open loop at a fixed rate (Kubernetes' pod-startup SLO
    test: 20 pods/s); per pod, the time from sending its create to seeing
    it Running and Ready on a watch started before the first create; plus
    a breakdown per stage from the watch (bound, first status, pod IP)
    and the agent's event stamps (Pulled, Created, Started).
``burst``
    Pods created at once by many concurrent clients: time until all run.
``density``
    Many sleep pods at once (1m CPU, 1Mi requests): time until all run,
    then the node agent's CPU and memory, conmon's and the containers'
    memory, per-pod overhead, and the apiserver's RSS, read from /proc.

Between phases the pods are deleted and the host checked for leftovers.
At the end everything is torn down: pods, the server, conmon and
containers, overlay mounts, the bridge and nft tables
(:func:`kubevisor.runtime.network.remove_network`), cgroups, the data dir.
Progress goes to stderr, one line per step; the report is one JSON document.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from kubevisor.cli import benchhost as host
from kubevisor.cli.benchapi import BenchError, Target, percentile

JSON = dict[str, Any]
PHASES = ("baseline", "latency", "burst", "density")
NAMESPACES = ("bench-latency", "bench-burst", "bench-density")
IMAGE = "busybox:1"
NODE_NAME = "bench-pods-node"
TARGETS = {"latency_p50_s": 0.5, "latency_p99_s": 1.5, "burst_all_running_s": 15.0}
#: Where the pod CIDR is carved from (one free block, checked against the routes).
CIDR_POOL = ipaddress.ip_network("10.224.0.0/11")


@dataclass(frozen=True, slots=True)
class PodsBenchOptions:
    phases: tuple[str, ...] = PHASES
    baseline_n: int = 20
    latency_pods: int = 100
    latency_rate: float = 20.0
    burst_pods: int = 100
    conns: int = 16
    density_pods: int = 1000
    max_pods: int | None = None  # default: enough for the largest phase, at least 110
    image_archive: Path | None = None  # default: busybox built here
    image: str = IMAGE
    timeout_s: float = 300.0  # per phase, to get all pods running (density: scaled)
    stall_s: float = 120.0  # density gives up when no pod started for this long
    profile_dir: Path | None = None


Progress = Callable[[str], None]


def stderr_progress() -> Progress:
    t0 = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def summary_s(values: list[float]) -> JSON:
    return {"n": len(values), "p50_s": _r(percentile(values, 50)),
            "p90_s": _r(percentile(values, 90)), "p99_s": _r(percentile(values, 99)),
            "max_s": _r(max(values) if values else None)}


def bench_pod(name: str, image: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench-pods"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "sleep", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}}


def free_pod_cidr(pods: int) -> str:
    """A block of CIDR_POOL large enough for ``pods`` pods that overlaps no
    address or route on this host."""
    prefix = min(24, 32 - math.ceil(math.log2(pods + 3)))
    taken: list[ipaddress.IPv4Network] = []
    for cmd in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        with contextlib.suppress(OSError, subprocess.CalledProcessError, ValueError):
            for entry in json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout):
                nets = [entry.get("dst", "")] + [
                    f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])]
                for net in nets:
                    with contextlib.suppress(ValueError):
                        if net and net != "default":
                            taken.append(ipaddress.ip_network(net, strict=False))  # type: ignore[arg-type]
    blocks = list(CIDR_POOL.subnets(new_prefix=prefix))
    random.shuffle(blocks)
    for block in blocks:
        if not any(block.overlaps(t) for t in taken):
            return str(block)
    raise BenchError(f"no free /{prefix} in {CIDR_POOL}")


# -- the cluster -----------------------------------------------------------------


@dataclass(slots=True)
class Cluster:
    """``kubevisor up`` in a child process, with a network of its own."""

    work_dir: Path
    prefix: str
    pod_cidr: str
    max_pods: int
    proc: asyncio.subprocess.Process | None = None
    target: Target | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.prefix}"

    def network_config(self) -> Any:
        from kubevisor.node.agent import network_config

        return network_config(self.data_dir, pod_cidr=self.pod_cidr, network_prefix=self.prefix)

    async def start(self, timeout: float = 120.0) -> Target:
        spec = {"data_dir": str(self.data_dir), "max_pods": self.max_pods,
                "pod_cidr": self.pod_cidr, "network_prefix": self.prefix,
                "cgroup_parent": self.cgroup_parent, "node_name": NODE_NAME}
        self.log_path = self.work_dir / "up.log"
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kubevisor.cli.benchpods", "up", json.dumps(spec),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if not line:
            raise BenchError(f"kubevisor up did not start: {self.log_tail()}")
        ready = orjson.loads(line)
        self.target = Target(url=ready["url"], ca_pem=ready["ca_pem"], token=ready["token"])
        return self.target

    def log_tail(self, lines: int = 15, *, problems: bool = False) -> str:
        """The last lines of the server's (and its children's) log; with
        ``problems`` only warnings and errors (and their tracebacks)."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            if problems:
                text = [line for line in text if " INFO " not in line]
            return "\n".join(text[-lines:])
        return ""

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tree(self) -> host.Tree:
        return host.processes(self.pid, self.data_dir)


def _http(target: Target, conns: int = 32) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cadata=target.ca_pem) if target.ca_pem else False)
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    return httpx.AsyncClient(base_url=target.url, verify=verify, headers=headers, timeout=60,
                             limits=httpx.Limits(max_connections=conns,
                                                 max_keepalive_connections=conns))


async def wait_node_ready(http: httpx.AsyncClient, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        resp = await http.get(f"/api/v1/nodes/{NODE_NAME}")
        if resp.status_code == 200:
            conds = (resp.json().get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise BenchError(f"node {NODE_NAME} not Ready within {timeout:.0f}s")


# -- watching pods ----------------------------------------------------------------


@dataclass(slots=True)
class PodTimes:
    """Wall-clock seconds (time.time) of what happened to one pod."""

    sent: float = 0.0
    answered: float = 0.0
    bound: float | None = None
    first_status: float | None = None  # the agent's first status write (hostIP)
    pod_ip: float | None = None
    running: float | None = None
    ready: float | None = None


class PodWatch:
    """One namespace's pods on a watch; notes when each reaches each stage."""

    def __init__(self, target: Target, ns: str) -> None:
        self.target, self.ns = target, ns
        self.pods: dict[str, PodTimes] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def start(self) -> None:
        async with _http(self.target, 2) as http:
            resp = await http.get(f"/api/v1/namespaces/{self.ns}/pods", params={"limit": 1})
            rv = resp.json()["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))
        await asyncio.wait_for(self._started.wait(), 30)

    async def _run(self, rv: str) -> None:
        params = {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "false",
                  "timeoutSeconds": "36000"}
        async with _http(self.target, 2) as http, http.stream(
                "GET", f"/api/v1/namespaces/{self.ns}/pods", params=params,
                timeout=httpx.Timeout(60, read=36000)) as resp:
            self._started.set()
            async for line in resp.aiter_lines():
                now = time.time()
                event = orjson.loads(line)
                obj = event.get("object") or {}
                name = (obj.get("metadata") or {}).get("name")
                if not name or event.get("type") == "DELETED":
                    continue
                t = self.pods.setdefault(name, PodTimes())
                status = obj.get("status") or {}
                if t.bound is None and (obj.get("spec") or {}).get("nodeName"):
                    t.bound = now
                if t.first_status is None and (status.get("hostIP") or status.get("containerStatuses")):
                    t.first_status = now
                if t.pod_ip is None and status.get("podIP"):
                    t.pod_ip = now
                if t.running is None and status.get("phase") == "Running":
                    t.running = now
                if t.ready is None and status.get("phase") == "Running" and any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in status.get("conditions") or []):
                    t.ready = now
                self.changed.set()

    def count(self, names: list[str], what: str) -> int:
        return sum(1 for n in names if getattr(self.pods.get(n, PodTimes()), what) is not None)

    async def wait_all(self, names: list[str], what: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.count(names, what) < len(names):
            if self._task is not None and self._task.done():
                raise BenchError(f"the pod watch ended: {self._task.exception()!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


async def create_pods(http: httpx.AsyncClient, watch: PodWatch, names: list[str], image: str, *,
                      rate: float | None = None, conns: int = 16) -> JSON:
    """Create ``names``: open loop at ``rate`` per second, or as fast as
    ``conns`` concurrent clients go. Returns the create errors."""
    errors: dict[str, int] = {}
    path = f"/api/v1/namespaces/{watch.ns}/pods"

    async def one(name: str) -> None:
        body = orjson.dumps(bench_pod(name, image))
        t = watch.pods.setdefault(name, PodTimes())
        t.sent = time.time()
        try:
            resp = await http.post(path, content=body, headers={"Content-Type": "application/json"})
            code = str(resp.status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        t.answered = time.time()
        if code != "201":
            errors[code] = errors.get(code, 0) + 1

    if rate is not None:
        t0 = time.monotonic()
        tasks = []
        for i, name in enumerate(names):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(name)))
        await asyncio.gather(*tasks)
    else:
        todo = iter(names)

        async def worker() -> None:
            for name in todo:
                await one(name)

        await asyncio.gather(*(worker() for _ in range(conns)))
    return errors


async def delete_all(http: httpx.AsyncClient, cluster: Cluster, namespaces: list[str],
                     timeout: float, conns: int = 16) -> JSON:
    """Delete every pod of ``namespaces``, wait until they are gone from the
    API and the host has no container of this cluster left."""
    t0 = time.monotonic()

    async def pods(ns: str) -> list[str]:
        resp = await http.get(f"/api/v1/namespaces/{ns}/pods")
        return [p["metadata"]["name"] for p in resp.json().get("items") or []] \
            if resp.status_code == 200 else []

    todo = iter([(ns, name) for ns in namespaces for name in await pods(ns)])

    async def worker() -> None:
        for ns, name in todo:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/api/v1/namespaces/{ns}/pods/{name}")

    await asyncio.gather(*(worker() for _ in range(conns)))
    left, containers = -1, -1
    while time.monotonic() - t0 < timeout:
        left = sum([len(await pods(ns)) for ns in namespaces])
        containers = len(cluster.tree().conmon)
        if left == 0 and containers == 0:
            break
        await asyncio.sleep(0.5)
    return {"seconds": _r(time.monotonic() - t0, 2), "pods_left": left,
            "conmon_left": containers}


# -- phases -----------------------------------------------------------------------


async def phase_baseline(cluster: Cluster, options: PodsBenchOptions, archive: Path) -> JSON:
    """The raw OCI start of the same container, in a store and state dir of
    its own (so the agent never sees these containers)."""
    from kubevisor.runtime import oci
    from kubevisor.runtime.images import LocalImageStore

    root = cluster.work_dir / "baseline"
    store = LocalImageStore(root / "images")
    prepared: list[tuple[str, float]] = []
    try:
        await store.import_archive(str(archive))
        image = store.get(options.image)
        if image is None:
            raise BenchError(f"{archive} has no image {options.image}")
        runtime = await oci.open_runtime(str(root / "containers"),
                                         cgroup_parent=f"{cluster.cgroup_parent}-oci")

        async def rootfs(cid: str) -> str:
            dest = root / "rootfs" / cid
            dest.mkdir(parents=True)
            t = time.perf_counter()
            path = await store.prepare_rootfs(image, str(dest))
            prepared.append((str(dest), time.perf_counter() - t))
            return path

        args = ["sleep", "3600"]
        await host.measure(runtime, rootfs, n=1, args=args, workdir=str(root))  # warm-up
        samples = await host.measure(runtime, rootfs, n=options.baseline_n, args=args,
                                     workdir=str(root))
        caps = runtime.capabilities
        return {"what": "seconds from OciRuntime.run() call to a running container (bundle, "
                        "conmon, runtime create, start), sequential; rootfs prepared before",
                "runtime": f"{caps.name} {caps.version}", **summary_s(samples),
                "rootfs_prepare": summary_s([s for _, s in prepared[1:]]),
                "samples_s": [_r(s, 4) for s in samples]}
    finally:
        for dest, _ in prepared:
            with contextlib.suppress(Exception):
                await store.release_rootfs(dest)
        await store.aclose()
        _remove_cgroups(f"{cluster.cgroup_parent}-oci")


async def _events(http: httpx.AsyncClient, ns: str) -> dict[str, dict[str, float]]:
    """Per pod, the agent's stamp of its first event of each reason (the
    stamp is in the event's name: ``<pod>.<unix nanoseconds in hex>``)."""
    out: dict[str, dict[str, float]] = {}
    items = (await http.get(f"/api/v1/namespaces/{ns}/events")).json().get("items") or []
    for ev in items:
        pod = (ev.get("involvedObject") or {}).get("name")
        name = (ev.get("metadata") or {}).get("name") or ""
        head, _, stamp = name.rpartition(".")
        if not pod or head != pod:
            continue
        try:
            at = int(stamp, 16) / 1e9
        except ValueError:
            continue
        reasons = out.setdefault(pod, {})
        reason = ev.get("reason") or ""
        reasons[reason] = min(at, reasons.get(reason, at))
    return out


STAGES = (
    ("create_response", "sent", "answered"),
    ("scheduled", "sent", "bound"),
    ("agent_first_status", "bound", "first_status"),
    ("network_setup", "first_status", "pod_ip"),
    ("sources_volumes_image", "pod_ip", "Pulled"),
    ("rootfs_etc_prepare", "Pulled", "Created"),
    ("runtime_start", "Created", "Started"),
    ("status_running", "Started", "running"),
    ("ready_after_running", "running", "ready"),
)


def breakdown(watch: PodWatch, names: list[str], events: dict[str, dict[str, float]]) -> JSON:
    """Per stage, the p50/p90/p99 seconds between consecutive marks."""
    out: JSON = {}
    for stage, a, b in STAGES:
        values = []
        for n in names:
            t = watch.pods.get(n)
            if t is None:
                continue
            marks = {**asdict(t), **events.get(n, {})}
            if marks.get(a) is not None and marks.get(b) is not None:
                values.append(marks[b] - marks[a])
        s = summary_s(values)
        out[stage] = {"from": a, "to": b, "n": s["n"], "p50_s": s["p50_s"],
                      "p90_s": s["p90_s"], "p99_s": s["p99_s"]}
    return out


async def phase_latency(cluster: Cluster, http: httpx.AsyncClient, options: PodsBenchOptions,
                        say: Progress) -> JSON:
    assert cluster.target is not None
    ns = await _namespace(http, "bench-latency")
    watch = PodWatch(cluster.target, ns)
    await watch.start()
    names = [f"lat-{i}" for i in range(options.latency_pods)]
    try:
        cpu0 = _agent_cpu(cluster)
        say(f"latency: creating {len(names)} pods at {options.latency_rate:g}/s")
        errors = await create_pods(http, watch, names, options.image, rate=options.latency_rate)
        ok = await watch.wait_all(names, "ready", options.timeout_s)
        cpu1 = _agent_cpu(cluster)
        say(f"latency: {watch.count(names, 'ready')}/{len(names)} running and ready")
    finally:
        await watch.stop()
    values = [t.ready - t.sent for n in names if (t := watch.pods[n]).ready is not None]
    events = await _events(http, ns)
    out: JSON = {"pods": len(names), "rate_per_s": options.latency_rate, "create_errors": errors,
                 "all_ready": ok, "running_and_ready": len(values),
                 "create_to_running_ready": summary_s(values),
                 "stages": breakdown(watch, names, events),
                 "agent_cpu_s": _r(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None}
    if not ok:
        out["log_problems"] = cluster.log_tail(40, problems=True)
    return out


async def phase_burst(cluster: Cluster, http: httpx.AsyncClient, options: PodsBenchOptions,
                      say: Progress) -> JSON:
    assert cluster.target is not None
    ns = await _namespace(http, "bench-burst")
    watch = PodWatch(cluster.target, ns)
    await watch.start()
    names = [f"burst-{i}" for i in range(options.burst_pods)]
    try:
        cpu0 = _agent_cpu(cluster)
        say(f"burst: creating {len(names)} pods with {options.conns} clients")
        t0 = time.time()
        errors = await create_pods(http, watch, names, options.image, conns=options.conns)
        created = time.time() - t0
        ok = await watch.wait_all(names, "ready", options.timeout_s)
        cpu1 = _agent_cpu(cluster)
        say(f"burst: {watch.count(names, 'running')}/{len(names)} running")
    finally:
        await watch.stop()
    running = [t.running for n in names if (t := watch.pods[n]).running is not None]
    ready = [t.ready for n in names if (t := watch.pods[n]).ready is not None]
    latencies = [t.ready - t.sent for n in names if (t := watch.pods[n]).ready is not None]
    events = await _events(http, ns)
    all_running = len(running) == len(names)
    out: JSON = {
        "pods": len(names), "clients": options.conns, "create_errors": errors,
        "create_s": _r(created), "running": len(running),
        "all_running_s": _r(max(running) - t0) if all_running else None,
        "all_ready_s": _r(max(ready) - t0) if ok else None,
        "create_to_running_ready": summary_s(latencies),
        "stages": breakdown(watch, names, events),
        "agent_cpu_s": _r(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None}
    if not ok:
        out["log_problems"] = cluster.log_tail(40, problems=True)
    return out


def _states(watch: PodWatch, names: list[str]) -> JSON:
    """How many pods got how far (the last mark each reached)."""
    out: JSON = {}
    for n in names:
        t = watch.pods.get(n, PodTimes())
        last = next((k for k in ("ready", "running", "pod_ip", "first_status", "bound")
                     if getattr(t, k) is not None), "created" if t.answered else "not created")
        out[last] = out.get(last, 0) + 1
    return out


def _snapshot(cluster: Cluster) -> JSON:
    tree = cluster.tree()
    helpers = host.memory(tree.agent_helpers)
    return {
        "agent": {"cpu_s": host.cpu_s(tree, tree.agent), **host.memory([tree.agent or -1])},
        "agent_helpers": {"cpu_s": _r(sum(tree.procs[p].cpu_s for p in tree.agent_helpers
                                          if p in tree.procs), 2), **helpers},
        "conmon": host.memory(tree.conmon),
        "containers": host.memory(tree.containers),
        "apiserver": {"cpu_s": host.cpu_s(tree, tree.server), **host.memory([tree.server or -1])},
        "controllers": {"cpu_s": host.cpu_s(tree, tree.controllers),
                        **host.memory([tree.controllers or -1])},
        "containers_cgroup_mib": host.cgroup_memory_mib(cluster.cgroup_parent),
        "host_memory_mib": host.host_memory_mib(),
    }


async def phase_density(cluster: Cluster, http: httpx.AsyncClient, options: PodsBenchOptions,
                        say: Progress) -> JSON:
    assert cluster.target is not None
    ns = await _namespace(http, "bench-density")
    n = options.density_pods
    before = _snapshot(cluster)
    watch = PodWatch(cluster.target, ns)
    await watch.start()
    names = [f"dens-{i}" for i in range(n)]
    timeout = max(options.timeout_s, options.timeout_s * n / 100)
    timeline: list[int] = []
    try:
        say(f"density: creating {n} pods with {options.conns} clients")
        t0 = time.time()
        errors = await create_pods(http, watch, names, options.image, conns=options.conns)
        say(f"density: {n} created in {time.time() - t0:.1f}s; waiting for Running")
        deadline = time.monotonic() + timeout
        last_say = time.monotonic()
        stalled = False
        while time.monotonic() < deadline:
            if await watch.wait_all(names, "running", 10.0):
                break
            timeline.append(watch.count(names, "running"))
            if time.monotonic() - last_say >= 30:
                say(f"density: {timeline[-1]}/{n} running")
                last_say = time.monotonic()
            window = int(options.stall_s // 10)
            if len(timeline) > window and timeline[-1] == timeline[-1 - window]:
                stalled = True
                say(f"density: no pod started in {options.stall_s:g}s; giving up")
                break
        states = _states(watch, names)
        running = [t.running for x in names if (t := watch.pods[x]).running is not None]
        all_running = len(running) == n
        say(f"density: {len(running)}/{n} running; settling 5s before measuring")
        await asyncio.sleep(5.0)
        after = _snapshot(cluster)
    finally:
        await watch.stop()
    # container figures per pod that has a container; the agent's per pod it holds
    with_container = max(after["conmon"]["processes"], 1)
    per_pod_pss = (after["conmon"]["pss_mib"] + after["containers"]["pss_mib"]) / with_container
    per_pod_rss = (after["conmon"]["rss_mib"] + after["containers"]["rss_mib"]) / with_container
    agent_growth = (after["agent"]["uss_mib"] - before["agent"]["uss_mib"]) / n
    host_drop = before["host_memory_mib"]["available"] - after["host_memory_mib"]["available"]
    agent_cpu = (after["agent"]["cpu_s"] or 0) - (before["agent"]["cpu_s"] or 0)
    out: JSON = {
        "pods": n, "create_errors": errors, "running": len(running),
        "all_running_s": _r(max(running) - t0, 2) if all_running else None,
        "running_every_10s": timeline, "stalled": stalled,
        "pods_by_stage": states,
        "agent_cpu_s": _r(agent_cpu, 2),
        "agent_cpu_s_per_pod": _r(agent_cpu / n, 4),
        "before": before, "after": after,
        "per_pod_mib": {
            "pods_with_a_container": after["conmon"]["processes"],
            "conmon_and_container_pss": _r(per_pod_pss, 3),
            "conmon_and_container_rss": _r(per_pod_rss, 3),
            "conmon_pss": _r(after["conmon"]["pss_mib"] / with_container, 3),
            "container_pss": _r(after["containers"]["pss_mib"] / with_container, 3),
            "agent_uss_growth": _r(agent_growth, 4),
            "host_available_drop": _r(host_drop / n, 3),
        },
        "notes": "PSS shares pages among processes fairly (busybox's pages are mapped by all "
                 "sleep containers); host_available_drop is MemAvailable before minus after, "
                 "which also counts kernel memory (netns, veths, overlay mounts, cgroups) but "
                 "moves with whatever else runs on the machine.",
    }
    if not all_running:
        out["log_problems"] = cluster.log_tail(40, problems=True)
    return out


async def _cleanup_phase(http: httpx.AsyncClient, cluster: Cluster, ns: str, say: Progress,
                         phase: str, timeout: float = 120.0) -> JSON:
    say(f"{phase}: deleting pods")
    result = await delete_all(http, cluster, [ns], timeout)
    say(f"{phase}: deleted in {result['seconds']}s ({result['pods_left']} pods, "
        f"{result['conmon_left']} containers left)")
    return result


async def _namespace(http: httpx.AsyncClient, name: str) -> str:
    resp = await http.post("/api/v1/namespaces", json={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    if resp.status_code not in (201, 409):
        raise BenchError(f"namespace {name}: {resp.status_code} {resp.text[:200]}")
    return name


def _agent_cpu(cluster: Cluster) -> float | None:
    tree = cluster.tree()
    return host.cpu_s(tree, tree.agent)


# -- the run -------------------------------------------------------------------------


async def run_pods_bench(options: PodsBenchOptions, say: Progress | None = None) -> JSON:
    say = say or stderr_progress()
    load = [round(x, 2) for x in os.getloadavg()]
    report: JSON = {
        "benchmark": "pods",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "python": sys.version.split()[0], "load_average_before": load,
                    "memory_mib": host.host_memory_mib()},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    }
    largest = max([options.latency_pods if "latency" in options.phases else 0,
                   options.burst_pods if "burst" in options.phases else 0,
                   options.density_pods if "density" in options.phases else 0])
    max_pods = options.max_pods or max(110, largest + 10)
    work_dir = Path(tempfile.mkdtemp(prefix="kubevisor-bench-pods-"))
    cluster = Cluster(work_dir=work_dir, prefix="kvb" + secrets.token_hex(2),
                      pod_cidr=free_pod_cidr(max_pods), max_pods=max_pods)
    report["cluster"] = {"network_prefix": cluster.prefix, "pod_cidr": cluster.pod_cidr,
                         "max_pods": max_pods, "cgroup_parent": cluster.cgroup_parent,
                         "node": NODE_NAME, "work_dir": str(work_dir)}
    try:
        archive = options.image_archive or host.busybox_archive(work_dir / "busybox.tar",
                                                               options.image)
        await _import(archive, cluster.data_dir)
        say(f"up: starting kubevisor up in {work_dir} (network {cluster.prefix}, "
            f"pods {cluster.pod_cidr}, max pods {max_pods})")
        target = await cluster.start()
        async with _http(target, max(32, options.conns * 2)) as http:
            report["cluster"]["node_ready_s"] = _r(await wait_node_ready(http, 120), 2)
            report["cluster"]["pids"] = _pids(cluster)
            say(f"up: node {NODE_NAME} Ready")
            if "baseline" in options.phases:
                say(f"baseline: {options.baseline_n} raw OCI starts")
                report["baseline"] = await phase_baseline(cluster, options, archive)
                say(f"baseline: p50 {report['baseline']['p50_s']}s")
            profiles: JSON = {}
            for name, phase in (("latency", phase_latency), ("burst", phase_burst),
                                ("density", phase_density)):
                if name not in options.phases:
                    continue
                async with _profiled(cluster, options.profile_dir, name, profiles):
                    report[name] = await phase(cluster, http, options, say)
                pods = {"latency": options.latency_pods, "burst": options.burst_pods,
                        "density": options.density_pods}[name]
                report[name]["cleanup"] = await _cleanup_phase(
                    http, cluster, f"bench-{name}", say, name, timeout=max(120.0, pods * 0.5))
            if profiles:
                report["profiles"] = profiles
    except BaseException:
        report.setdefault("errors", []).append(cluster.log_tail())
        raise
    finally:
        say("teardown: stopping kubevisor up and removing everything")
        report["teardown"] = await teardown(cluster)
        say(f"teardown: {report['teardown']}")
    report["targets"] = targets(report)
    return report


async def run_until_stopped(options: PodsBenchOptions, stop: asyncio.Event) -> JSON:
    """:func:`run_pods_bench`, cancelled (and so torn down) when ``stop`` is set."""
    task = asyncio.create_task(run_pods_bench(options))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise BenchError("interrupted; everything torn down")
    return task.result()


def _pids(cluster: Cluster) -> JSON:
    tree = cluster.tree()
    return {"apiserver": tree.server, "controllers": tree.controllers, "agent": tree.agent}


@contextlib.asynccontextmanager
async def _profiled(cluster: Cluster, out_dir: Path | None, phase: str,
                    profiles: JSON) -> Any:
    """py-spy recordings of the agent, the apiserver and the controllers
    during ``phase`` (with ``--profile DIR``)."""
    if out_dir is None:
        yield
        return
    from kubevisor.cli.profiling import Profiler

    pids = _pids(cluster)
    async with contextlib.AsyncExitStack() as stack:
        for who in ("agent", "apiserver", "controllers"):
            if pids[who] is not None:
                part = profiles.setdefault(who, {})
                await stack.enter_async_context(
                    Profiler(pids[who], out_dir / who).phase(phase, part))
        yield


async def _import(archive: Path, data_dir: Path) -> None:
    from kubevisor.runtime.images import LocalImageStore

    store = LocalImageStore(data_dir / "images")
    try:
        await store.import_archive(str(archive))
    finally:
        await store.aclose()


def targets(report: JSON) -> JSON:
    lat = (report.get("latency") or {}).get("create_to_running_ready") or {}
    base = report.get("baseline") or {}
    burst = report.get("burst") or {}
    out: JSON = {}

    def target(key: str, measured: float | None, limit: float) -> None:
        out[key] = {"target": f"<= {limit:g}", "measured": measured,
                    "met": None if measured is None else measured <= limit}

    if "latency" in report:
        target("latency_p50_s", lat.get("p50_s"), TARGETS["latency_p50_s"])
        target("latency_p99_s", lat.get("p99_s"), TARGETS["latency_p99_s"])
        if base.get("p50_s") and lat.get("p50_s") is not None:
            out["latency_p50_over_baseline_p50"] = _r(lat["p50_s"] / base["p50_s"], 1)
    if "burst" in report:
        measured = burst.get("all_running_s")
        target("burst_all_running_s", measured, TARGETS["burst_all_running_s"])
    return out


async def teardown(cluster: Cluster) -> JSON:
    """Stop the server (and with it the agent), then remove what the agent
    left on purpose (containers outlive it), the network and the data dir;
    report what could not be removed."""
    from kubevisor.runtime.network import remove_network

    out: JSON = {}
    if cluster.proc is not None and cluster.proc.returncode is None:
        tree = cluster.tree()
        if tree.conmon and cluster.target is not None:
            async with _http(cluster.target) as http:
                with contextlib.suppress(httpx.HTTPError, BenchError, ValueError):
                    out["pods_deleted"] = await delete_all(http, cluster, list(NAMESPACES), 120)
    await cluster.stop()
    data_dir = cluster.data_dir
    with contextlib.suppress(Exception):
        from kubevisor.runtime.oci import open_runtime

        runtime = await open_runtime(str(data_dir / "containers"),
                                     cgroup_parent=cluster.cgroup_parent)
        for c in await runtime.list():
            with contextlib.suppress(Exception):
                await runtime.stop(c.id, grace_seconds=0)
            with contextlib.suppress(Exception):
                await runtime.remove(c.id)
    for pid in host.processes(-1, data_dir).conmon:  # anything the runtime did not know
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _unmount_under(cluster.work_dir)
    with contextlib.suppress(Exception):
        await remove_network(cluster.network_config())
    await asyncio.sleep(0.5)
    _remove_cgroups(cluster.cgroup_parent)
    out["conmon_left"] = len(host.processes(-1, data_dir).conmon)
    out["mounts_left"] = len(_mounts_under(cluster.work_dir))
    out["bridge_left"] = Path(f"/sys/class/net/{cluster.prefix}0").exists()
    out["netns_left"] = len([p for p in Path("/run/netns").glob(f"{cluster.prefix}-*")]) \
        if Path("/run/netns").is_dir() else 0
    out["nft_tables_left"] = _nft_tables(cluster.prefix)
    if not out["mounts_left"]:
        shutil.rmtree(cluster.work_dir, ignore_errors=True)
    out["clean"] = not (out["conmon_left"] or out["mounts_left"] or out["bridge_left"]
                        or out["netns_left"] or out["nft_tables_left"])
    return out


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].replace("\\040", " ") for line in lines]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _unmount_under(root: Path) -> None:
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_cgroups(parent: str) -> None:
    rel = parent.strip("/")
    roots = [Path("/sys/fs/cgroup")] + [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()]
    for base in roots:
        top = base / rel
        if not top.is_dir() or top == base:
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                        reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _nft_tables(prefix: str) -> int:
    try:
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                             check=False).stdout
    except OSError:
        return 0
    return sum(1 for line in out.splitlines() if line.split()[-1:] and
               line.split()[-1].startswith(prefix))


# -- the child: kubevisor up with the bench's node options ---------------------------


def _up_main(spec_json: str) -> int:
    """``kubevisor up`` on 127.0.0.1 (a free port) with the node options of
    ``spec_json``; prints one JSON line (url, CA, token) once serving."""
    import logging

    from kubevisor.cli.up import UpOptions, run_up

    spec = json.loads(spec_json)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)

    def ready(url: Any) -> None:
        print(json.dumps({"url": str(url), "ca_pem": url.credentials.ca_pem.decode(),
                          "token": url.token}), flush=True)

    options = UpOptions(data_dir=Path(spec["data_dir"]), host="127.0.0.1", port=0,
                        node_name=spec["node_name"], max_pods=spec["max_pods"],
                        pod_cidr=spec["pod_cidr"], network_prefix=spec["network_prefix"],
                        cgroup_parent=spec["cgroup_parent"], on_ready=ready,
                        stream_port=0)  # a free port: another agent may hold 10250
    return run_up(options)


if __name__ == "__main__":
    if sys.argv[1:2] == ["up"]:
        sys.exit(_up_main(sys.argv[2]))
    sys.exit("usage: python -m kubevisor.cli.benchpods up SPEC_JSON")
