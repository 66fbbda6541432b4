"""``kubevisor bench scheduler``: pods bound per second, end to end through the API.

Called by :mod:`kubevisor.cli.bench`. Without ``server`` it starts its own
apiserver in this process with the controller manager (and so the
scheduler) in a child process, as ``kubevisor up`` runs them; with
``server`` and a kubeconfig it targets a running cluster whose scheduler
is already running. It creates ``nodes`` Node objects (no agents; 8 cores,
32 GiB, 110 pods each, as a typical cloud node), then releases a
:mod:`kubevisor.cli.loadgen` worker process that creates ``pods`` pods as
fast as the server takes them, while this process watches the pods and
notes when each is bound. Reported: the end-to-end rate (first create to
last bound), the steady rate (the middle 80% of bindings), the create
rate, and the CPU of the server and controller processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import ssl
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from kubevisor.cli.benchapi import BenchError, Target, _external, _own_server, _r, _setup

JSON = dict[str, Any]
TARGET_PODS_PER_S = 1000.0
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class SchedulerBenchOptions:
    server: str | None = None
    kubeconfig: Path | None = None
    nodes: int = 5_000
    pods: int = 10_000
    procs: int = 1
    conns: int = 16
    timeout_s: float = 300.0
    #: Own server's control plane: "process" (the whole controller manager in a
    #: child process, as ``kubevisor up``) or "scheduler" (only the scheduler in
    #: a child process: its own cost, apart from the other controllers').
    controllers: str = "process"


def node_body(name: str) -> JSON:
    alloc = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    zone = f"zone-{hash(name) % 3}"
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": zone}},
            "spec": {},
            "status": {"capacity": alloc, "allocatable": alloc,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _http(target: Target) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cadata=target.ca_pem) if target.ca_pem else False)
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    return httpx.AsyncClient(base_url=target.url, verify=verify, headers=headers, timeout=60,
                             limits=httpx.Limits(max_connections=32))


async def _create_nodes(target: Target, count: int, prefix: str) -> float:
    t0 = time.perf_counter()
    async with _http(target) as http:
        names = iter(range(count))

        async def loop() -> None:
            for i in names:
                resp = await http.post("/api/v1/nodes", content=orjson.dumps(
                    node_body(f"{prefix}-{i}")), headers={"Content-Type": "application/json"})
                if resp.status_code not in (201, 409):
                    raise BenchError(f"node create: {resp.status_code} {resp.text[:200]}")

        await asyncio.gather(*(loop() for _ in range(16)))
    return time.perf_counter() - t0


class BindWatch:
    """Watches the namespace's pods and notes when each first shows a node."""

    def __init__(self) -> None:
        self.bound: dict[str, float] = {}
        self.done = asyncio.Event()
        self.want = 0

    async def run(self, target: Target, ns: str, resource_version: str) -> None:
        async with _http(target) as http:
            params = {"watch": "true", "resourceVersion": resource_version,
                      "allowWatchBookmarks": "false", "timeoutSeconds": "3600"}
            async with http.stream("GET", f"/api/v1/namespaces/{ns}/pods", params=params,
                                   timeout=httpx.Timeout(60, read=3600)) as resp:
                async for line in resp.aiter_lines():
                    if b'"nodeName"' not in (raw := line.encode()):
                        continue
                    now = time.perf_counter()
                    obj = orjson.loads(raw).get("object") or {}
                    name = (obj.get("metadata") or {}).get("name")
                    if name and name not in self.bound and (obj.get("spec") or {}).get("nodeName"):
                        self.bound[name] = now
                        if len(self.bound) >= self.want:
                            self.done.set()


def bench_pod(name: str) -> bytes:
    """A small pod for the default scheduler (10m CPU, 16 MiB)."""
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-scheduler"}},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})


class Creator:
    """``python -m kubevisor.cli.benchscheduler``: a process creating the pods
    over lean keep-alive connections (:mod:`kubevisor.cli.loadgen.http`), so
    their creation costs this process (the server's) nothing."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, target: Target, ns: str, pods: int, conns: int) -> Creator:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubevisor.cli.benchscheduler",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(orjson.dumps({"url": target.url, "ca_pem": target.ca_pem,
                                       "token": target.token, "namespace": ns, "pods": pods,
                                       "conns": conns}) + b"\n")
        await proc.stdin.drain()
        if not orjson.loads(await proc.stdout.readline() or b"{}").get("ready"):
            raise BenchError("the pod creator did not start")
        return cls(proc)

    async def run(self) -> JSON:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the pod creator exited with {await self.proc.wait()}")
        result: JSON = orjson.loads(line)
        return result

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


async def _creator_main() -> None:
    import resource

    from kubevisor.cli.loadgen.http import Endpoint, HTTPError

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    job = orjson.loads(await reader.readline())
    endpoint = Endpoint(job["url"], ca_pem=job["ca_pem"], token=job["token"])
    conns = [await endpoint.connect() for _ in range(job["conns"])]
    path = f"/api/v1/namespaces/{job['namespace']}/pods"
    bodies = [bench_pod(f"p-{i}") for i in range(job["pods"])]
    errors: dict[str, int] = {}
    created = 0
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    await reader.readline()
    todo = iter(bodies)

    async def loop_one(conn: Any) -> None:
        nonlocal created
        for body in todo:
            try:
                status, _ = await conn.request("POST", path, body)
            except HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                conn = await endpoint.connect()
                continue
            if status == 201:
                created += 1
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1

    await asyncio.gather(*(loop_one(c) for c in conns))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(orjson.dumps({"created": created, "errors": errors,
                        "cpu_s": usage.ru_utime + usage.ru_stime}).decode(), flush=True)


def _proc_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _controllers_pid() -> int | None:
    """The controller manager child of this process (own-server mode)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat[1] == me and b"kubevisor.cli.controllers" in cmd:
            return int(entry.name)
    return None


async def _wait_probe(target: Target, ns: str, timeout: float) -> float:
    """Create one pod and wait for it to be bound: the scheduler is up."""
    t0 = time.perf_counter()
    async with _http(target) as http:
        await http.post(f"/api/v1/namespaces/{ns}/pods", json={
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}})
        while time.perf_counter() - t0 < timeout:
            got = (await http.get(f"/api/v1/namespaces/{ns}/pods/probe")).json()
            if (got.get("spec") or {}).get("nodeName"):
                return time.perf_counter() - t0
            await asyncio.sleep(0.1)
    raise BenchError("the scheduler did not bind a probe pod: is one running?")


async def run_scheduler_bench(options: SchedulerBenchOptions) -> JSON:
    work_dir = Path(tempfile.mkdtemp(prefix="kubevisor-bench-sched-"))
    try:
        report: JSON = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "load_average_before": [round(x, 2) for x in os.getloadavg()]},
            "options": {k: str(v) if isinstance(v, Path) else v
                        for k, v in asdict(options).items()},
        }
        async with contextlib.AsyncExitStack() as stack:
            server_pid: int | None
            if options.server or options.kubeconfig:
                target = _external(options)  # type: ignore[arg-type]
                server_pid, controllers_pid = None, None
                report["server"] = {"mode": "external", "url": target.url}
            else:
                alone = options.controllers == "scheduler"
                target = await stack.enter_async_context(
                    _own_server(work_dir, controllers="none" if alone else "process"))
                if alone:
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "kubevisor.cli.benchscheduler", "--scheduler",
                        str(work_dir / "server" / "kubeconfig"), stdin=asyncio.subprocess.DEVNULL)
                    stack.callback(_terminate, proc)
                    controllers_pid: int | None = proc.pid
                else:
                    controllers_pid = _controllers_pid()
                server_pid = os.getpid()
                report["server"] = {"mode": "in-process", "store": "sqlite",
                                    "controllers": options.controllers}
            suffix = secrets.token_hex(3)
            ns = f"bench-sched-{suffix}"
            await _setup(target, [ns])
            report["setup"] = {
                "nodes_create_s": _r(await _create_nodes(target, options.nodes,
                                                         f"bench-{suffix}"), 2)}
            report["setup"]["probe_bound_s"] = _r(await _wait_probe(target, ns, 120), 2)
            await asyncio.sleep(2.0)  # let the scheduler's node watch catch up
            async with _http(target) as http:
                lst = (await http.get(f"/api/v1/namespaces/{ns}/pods", params={"limit": 1}))
                rv = lst.json()["metadata"]["resourceVersion"]
            watch = BindWatch()
            watch.want = options.pods
            watcher = asyncio.create_task(watch.run(target, ns, rv))
            creator = await Creator.start(target, ns, options.pods, options.conns)
            try:
                cpu_server0, cpu_ctrl0 = _proc_cpu(server_pid), _proc_cpu(controllers_pid)
                t0 = time.perf_counter()
                creating = asyncio.create_task(creator.run())
                creating.add_done_callback(lambda _: created_at.append(time.perf_counter()))
                created_at: list[float] = []
                deadline = t0 + options.timeout_s
                timeline = []  # pods bound after each second
                finished = asyncio.create_task(watch.done.wait())
                while not finished.done() and time.perf_counter() < deadline:
                    await asyncio.wait([finished], timeout=1.0)
                    timeline.append(len(watch.bound))
                finished.cancel()
                result = await creating
                created_s = created_at[0] - t0
                wall = time.perf_counter() - t0
                cpu_server1, cpu_ctrl1 = _proc_cpu(server_pid), _proc_cpu(controllers_pid)
            finally:
                creator.kill()
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher
            created = result["created"]
            times = sorted(watch.bound.values())
            report["create"] = {"count": created, "seconds": _r(created_s, 3),
                                "per_s": _r(created / created_s, 1) if created_s else None,
                                "errors": result["errors"]}
            out: JSON = {"nodes": options.nodes, "pods": options.pods, "bound": len(times),
                         "bound_each_second": timeline}
            if times:
                last = times[-1] - t0
                out["first_create_to_last_bound_s"] = _r(last, 3)
                out["pods_bound_per_s"] = _r(len(times) / last, 1) if last > 0 else None
                lo, hi = int(len(times) * 0.1), int(len(times) * 0.9) - 1
                if hi > lo and times[hi] > times[lo]:
                    out["steady_pods_bound_per_s"] = _r((hi - lo) / (times[hi] - times[lo]), 1)
            report["scheduling"] = out
            report["cpu_s"] = {
                "server": _r(cpu_server1 - cpu_server0, 2)
                if cpu_server0 is not None and cpu_server1 is not None else None,
                "controllers": _r(cpu_ctrl1 - cpu_ctrl0, 2)
                if cpu_ctrl0 is not None and cpu_ctrl1 is not None else None,
                "load_generator": _r(result["cpu_s"], 2),
                "wall_s": _r(wall, 2),
            }
            rate = out.get("pods_bound_per_s")
            report["target"] = {"pods_bound_per_s": f">= {TARGET_PODS_PER_S:g}",
                                "measured": rate,
                                "met": None if rate is None else rate >= TARGET_PODS_PER_S}
        return report
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _scheduler_main(kubeconfig: str) -> None:
    """Only the scheduler, on the server of ``kubeconfig`` (``--controllers scheduler``)."""
    from kubevisor.apiserver.server import run_until_signalled
    from kubevisor.client import Client
    from kubevisor.controllers.scheduler import Scheduler

    async def main(stop: asyncio.Event) -> None:
        async with Client.from_kubeconfig(kubeconfig) as client:
            task = asyncio.create_task(Scheduler(client).run())
            await stop.wait()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    run_until_signalled(main)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--scheduler"]:
        _scheduler_main(sys.argv[2])
    else:
        asyncio.run(_creator_main())
