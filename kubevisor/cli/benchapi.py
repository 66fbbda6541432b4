"""``kubevisor bench api``: measure the API server over real HTTPS.

Called by :mod:`kubevisor.cli.bench`. Without ``server`` it starts its own
apiserver in this process (tmp data dir, SQLite) so that this process's CPU
is the server's; with ``server`` and a kubeconfig it targets a running one.
Load comes from worker processes (:mod:`kubevisor.cli.loadgen`), each
holding keep-alive connections, that report their own CPU so the figures
are honest about sharing the machine. Phases, in order: raw store puts,
creates, gets, list (JSON and Table) at ``pods`` pods, mutating calls at a
fixed rate (open loop), watch delivery to many watchers. Returns one JSON
document with the figures and the issue's targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import resource
import secrets
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from kubevisor.cli.loadgen.jobs import pod_body

JSON = dict[str, Any]
PHASES = ("store", "create", "get", "list", "mutate", "watch")
TARGETS = {
    "creates_per_s": (">=", 3000.0),
    "gets_per_s": (">=", 5000.0),
    "mutating_p99_ms_at_rate": ("<=", 25.0),
    "list_10k_pods_s": ("<=", 0.3),
    "watch_p99_ms": ("<=", 25.0),
}


@dataclass(frozen=True, slots=True)
class BenchOptions:
    server: str | None = None
    kubeconfig: Path | None = None
    server_pid: int | None = None  # with --server: whose CPU to report as the server's
    phases: tuple[str, ...] = PHASES
    profile_dir: Path | None = None  # py-spy recordings of the server, one per phase
    controllers: str = "process"  # own server's controller manager, as `kubevisor up --controllers`
    procs: int = 2
    conns: int = 16
    pods: int = 10_000
    gets: int = 20_000
    rate: float = 1000.0
    rate_seconds: float = 5.0
    list_repeats: int = 5
    watchers: int = 100
    watch_events: int = 200
    watch_rate: float = 50.0
    store_puts: int = 5_000


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    ca_pem: str | None
    token: str | None


class BenchError(RuntimeError):
    """A phase could not run (worker died, server unreachable)."""


# -- statistics ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary_ms(values: list[float]) -> JSON:
    return {
        "n": len(values),
        "p50_ms": _r(percentile(values, 50)),
        "p90_ms": _r(percentile(values, 90)),
        "p99_ms": _r(percentile(values, 99)),
        "max_ms": _r(max(values) if values else None),
    }


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def _cpu_own() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_SERVER_PID: list[int | None] = [None]  # set by run_bench: whose CPU counts as the server's
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_self() -> float:
    """CPU seconds of the server process (all threads), or NaN when unknown."""
    pid = _SERVER_PID[0]
    if pid is None:
        return math.nan
    if pid == os.getpid():
        return _cpu_own()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / _TICKS


# -- workers -------------------------------------------------------------------


class Worker:
    """One ``python -m kubevisor.cli.loadgen`` process running one job."""

    def __init__(self, proc: asyncio.subprocess.Process, job: str) -> None:
        self.proc = proc
        self.job = job

    @classmethod
    async def start(cls, target: Target, job: JSON) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubevisor.cli.loadgen",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=256 * 1024 * 1024,
        )
        worker = cls(proc, job["job"])
        await worker._send(orjson.dumps({**job, **asdict(target)}))
        ready = await worker._receive()
        if not ready.get("ready"):
            raise BenchError(f"{worker.job} worker not ready: {ready}")
        return worker

    async def _send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        await self.proc.stdin.drain()

    async def _receive_raw(self) -> bytes:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise BenchError(f"{self.job} worker exited with {code}")
        return line

    async def _receive(self) -> JSON:
        doc: JSON = orjson.loads(await self._receive_raw())
        return doc

    async def go(self) -> None:
        await self._send(b"go")

    async def stop(self) -> None:
        await self._send(b"stop")

    async def result(self) -> bytes:
        """The result line, unparsed: parse it after the phase's CPU is read,
        as parsing it here would count as the server's CPU."""
        line = await self._receive_raw()
        await self.proc.wait()
        return line

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


async def _run_phase(target: Target, jobs: list[JSON]) -> tuple[list[JSON], JSON]:
    """Start workers for ``jobs``, release them together, collect results;
    returns the results and the phase's wall time and CPU use."""
    workers = await asyncio.gather(*(Worker.start(target, job) for job in jobs))
    try:
        cpu0, t0 = _cpu_self(), time.perf_counter()
        await asyncio.gather(*(w.go() for w in workers))
        lines = await asyncio.gather(*(w.result() for w in workers))
        wall, server_cpu = time.perf_counter() - t0, _cpu_self() - cpu0
    finally:
        for w in workers:
            w.kill()
    results = [orjson.loads(line) for line in lines]
    usage = {
        "wall_s": _r(wall, 3),
        "client_cpu_s": _r(sum(r["cpu_s"] for r in results), 3),
        "server_cpu_s": _r(server_cpu, 3),
    }
    return results, usage


def _per_op(usage: JSON, count: int) -> JSON:
    """CPU microseconds per request: figures that hold even when other work
    shares the machine (wall-clock rates do not)."""
    server, client = usage["server_cpu_s"], usage["client_cpu_s"]
    return {
        "server_cpu_us_per_op": _r(server / count * 1e6, 1) if server is not None and count else None,
        "client_cpu_us_per_op": _r(client / count * 1e6, 1) if client is not None and count else None,
    }


def _split(total: int, parts: int) -> list[tuple[int, int]]:
    bounds = [total * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def _merge(results: list[JSON]) -> tuple[list[float], dict[str, list[float]], dict[str, int], list[str]]:
    latencies: list[float] = []
    by_verb: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    samples: list[str] = []
    for r in results:
        latencies.extend(r["latencies_ms"])
        for verb, values in r["by_verb_ms"].items():
            by_verb.setdefault(verb, []).extend(values)
        for key, count in r["errors"].items():
            errors[key] = errors.get(key, 0) + count
        samples.extend(r["error_samples"])
    return latencies, by_verb, errors, samples[:3]


# -- phases ----------------------------------------------------------------------


async def phase_store(options: BenchOptions, work_dir: Path) -> JSON:
    """The raw store's creates/s with pod-sized values at the API phase's
    concurrency, plus the store engineer's own bench_store if present."""
    from kubevisor.store import open_store

    store = open_store("sqlite", data_dir=work_dir / "store-bench")
    await store.start()
    try:
        values = [pod_body(f"s-{i}", worker=0) for i in range(options.store_puts)]
        keys = iter(range(options.store_puts))

        async def loop() -> None:
            for i in keys:
                await store.create(f"/registry/pods/bench/s-{i}", values[i])

        cpu0, t0 = _cpu_own(), time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(options.conns)))
        wall, cpu = time.perf_counter() - t0, _cpu_own() - cpu0
        out: JSON = {
            "puts": options.store_puts,
            "concurrency": options.conns,
            "puts_per_s": _r(options.store_puts / wall, 1),
            "cpu_s": _r(cpu, 3),
        }
    finally:
        await store.close()
    with contextlib.suppress(ImportError):
        from kubevisor.store.bench import bench_store

        other = open_store("sqlite", data_dir=work_dir / "store-bench-2")
        await other.start()
        try:
            result = bench_store(other, n=options.store_puts, concurrency=options.conns)
            out["bench_store"] = await result if inspect.isawaitable(result) else result
        finally:
            await other.close()
    return out


async def phase_create(target: Target, options: BenchOptions, ns: str) -> JSON:
    jobs = [
        {"job": "create", "namespace": ns, "worker": w, "start": a, "stop": b, "conns": c}
        for w, ((a, b), c) in enumerate(zip(_split(options.pods, options.procs), _conns(options), strict=True))
    ]
    results, usage = await _run_phase(target, jobs)
    latencies, _, errors, samples = _merge(results)
    return {
        "count": len(latencies),
        "per_s": _r(len(latencies) / usage["wall_s"], 1),
        **summary_ms(latencies),
        "errors": errors,
        "error_samples": samples,
        **usage,
        **_per_op(usage, len(latencies)),
    }


async def phase_get(target: Target, options: BenchOptions, ns: str) -> JSON:
    jobs = [
        {"job": "get", "namespace": ns, "worker": w, "start": a, "stop": b, "conns": c,
         "count": n}
        for w, ((a, b), c, (_, n)) in enumerate(zip(
            _split(options.pods, options.procs), _conns(options),
            [(0, b - a) for a, b in _split(options.gets, options.procs)], strict=True,
        ))
    ]
    results, usage = await _run_phase(target, jobs)
    latencies, _, errors, samples = _merge(results)
    return {
        "count": len(latencies),
        "per_s": _r(len(latencies) / usage["wall_s"], 1),
        **summary_ms(latencies),
        "errors": errors,
        "error_samples": samples,
        **usage,
        **_per_op(usage, len(latencies)),
    }


async def phase_list(target: Target, options: BenchOptions, ns: str) -> JSON:
    results, usage = await _run_phase(
        target, [{"job": "list", "namespace": ns, "repeats": options.list_repeats}]
    )
    out: JSON = {"pods": options.pods, **usage}
    for kind, data in results[0].items():
        if not isinstance(data, dict):
            continue
        out[kind] = {
            "min_s": _r(min(data["latencies_ms"]) / 1000, 4),
            "p50_s": _r((percentile(data["latencies_ms"], 50) or 0) / 1000, 4),
            "max_s": _r(max(data["latencies_ms"]) / 1000, 4),
            "bytes": data["bytes"][0],
            "items": data["items"][0] if data["items"] else None,
            "statuses": sorted(set(data["statuses"])),
        }
    return out


async def phase_mutate(target: Target, options: BenchOptions, ns: str, create_ns: str) -> JSON:
    jobs = [
        {"job": "mutate", "namespace": ns, "create_namespace": create_ns, "worker": w,
         "start": a, "stop": b, "conns": c, "rate": options.rate / options.procs,
         "duration": options.rate_seconds}
        for w, ((a, b), c) in enumerate(zip(_split(options.pods, options.procs), _conns(options), strict=True))
    ]
    results, usage = await _run_phase(target, jobs)
    latencies, by_verb, errors, samples = _merge(results)
    sent = sum(r["sent"] for r in results)
    return {
        "target_per_s": options.rate,
        "sent": sent,
        "achieved_per_s": _r(len(latencies) / usage["wall_s"], 1),
        **summary_ms(latencies),
        "by_verb": {verb: summary_ms(values) for verb, values in sorted(by_verb.items())},
        "errors": errors,
        "error_samples": samples,
        **usage,
        **_per_op(usage, len(latencies)),
    }


async def phase_watch(target: Target, options: BenchOptions, ns: str) -> JSON:
    """Watchers on an empty namespace; one writer creates timestamped pods.
    Latency of a delivery: arrival at a watcher minus the write's
    acknowledgement (0 if it came first), and minus its sending."""
    per = _split(options.watchers, options.procs)
    watchers = await asyncio.gather(*(
        Worker.start(target, {"job": "watch", "namespace": ns, "watchers": b - a})
        for a, b in per if b > a
    ))
    try:
        cpu0, t0 = _cpu_self(), time.perf_counter()
        await asyncio.gather(*(w.go() for w in watchers))
        writer_results, _ = await _run_phase(target, [{
            "job": "write", "namespace": ns, "count": options.watch_events, "rate": options.watch_rate,
        }])
        await asyncio.sleep(1.0)  # let the last events arrive
        wall, server_cpu = time.perf_counter() - t0, _cpu_self() - cpu0
        await asyncio.gather(*(w.stop() for w in watchers))
        results = [orjson.loads(line) for line in await asyncio.gather(*(w.result() for w in watchers))]
    finally:
        for w in watchers:
            w.kill()
    writes = {name: (sent, ack, status) for name, sent, ack, status in writer_results[0]["writes"]}
    from_ack, from_send = [], []
    for r in results:
        for name, arrived in r["received"]:
            if name in writes:
                sent, ack, _ = writes[name]
                from_ack.append(max(0.0, arrived - ack) * 1000)
                from_send.append((arrived - sent) * 1000)
    ok_writes = sum(1 for *_, status in writes.values() if 200 <= status < 300)
    statuses: dict[str, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "watchers": options.watchers,
        "writes": ok_writes,
        "write_rate_per_s": options.watch_rate,
        "expected_deliveries": ok_writes * options.watchers,
        "deliveries": len(from_ack),
        "from_ack": summary_ms(from_ack),
        "from_send": summary_ms(from_send),
        "watch_statuses": statuses,
        "bad_lines": sum(sum(r["bad_lines"].values()) for r in results),
        "wall_s": _r(wall, 3),
        "client_cpu_s": _r(sum(r["cpu_s"] for r in results) + writer_results[0]["cpu_s"], 3),
        "server_cpu_s": _r(server_cpu, 3),
    }


def _conns(options: BenchOptions) -> list[int]:
    return [b - a for a, b in _split(options.conns, options.procs)]


# -- the run -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _own_server(work_dir: Path, *, controllers: str) -> AsyncIterator[Target]:
    from kubevisor.api.builtin import builtin_registry
    from kubevisor.apiserver.config import ServerConfig
    from kubevisor.apiserver.server import serve
    from kubevisor.store import open_store

    store = open_store("sqlite", data_dir=work_dir / "server")
    await store.start()
    config = ServerConfig(store=store, registry=builtin_registry())
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(
            serve(config, "127.0.0.1", 0, data_dir=work_dir / "server")
        )
        from kubevisor.cli.up import controllers_running

        await stack.enter_async_context(controllers_running(url.kubeconfig, mode=controllers))
        yield Target(url=str(url), ca_pem=url.credentials.ca_pem.decode(), token=url.token)


def _external(options: BenchOptions) -> Target:
    from kubevisor.client.kubeconfig import load_kubeconfig

    assert options.kubeconfig is not None, "--server needs --kubeconfig"
    conn = load_kubeconfig(options.kubeconfig)
    return Target(url=options.server or conn.server, ca_pem=conn.ca_pem, token=conn.token)


async def _setup(target: Target, namespaces: list[str]) -> None:
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cadata=target.ca_pem) if target.ca_pem else False
    )
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    async with httpx.AsyncClient(base_url=target.url, verify=verify, headers=headers, timeout=30) as http:
        for ns in namespaces:
            response = await http.post(
                "/api/v1/namespaces",
                json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            )
            if response.status_code not in (201, 409):
                raise BenchError(f"cannot create namespace {ns}: {response.status_code} {response.text[:300]}")


async def run_bench(options: BenchOptions) -> JSON:
    """Run every phase and return the report (see the module docstring)."""
    work_dir = Path(tempfile.mkdtemp(prefix="kubevisor-bench-"))
    try:
        report: JSON = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "load_average_before": [round(x, 2) for x in os.getloadavg()]},
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        }
        if "store" in options.phases:
            report["store"] = await phase_store(options, work_dir)
        async with contextlib.AsyncExitStack() as stack:
            if options.server or options.kubeconfig:
                target = _external(options)
                _SERVER_PID[0] = options.server_pid
                report["server"] = {"mode": "external", "url": target.url, "pid": options.server_pid}
            else:
                target = await stack.enter_async_context(
                    _own_server(work_dir, controllers=options.controllers)
                )
                _SERVER_PID[0] = os.getpid()
                report["server"] = {"mode": "in-process", "url": target.url, "store": "sqlite",
                                    "pid": os.getpid(), "controllers": options.controllers}
            suffix = secrets.token_hex(3)
            ns, rate_ns, watch_ns = f"bench-{suffix}", f"bench-rate-{suffix}", f"bench-watch-{suffix}"
            await _setup(target, [ns, rate_ns, watch_ns])
            wanted = set(options.phases)
            profiles: JSON = {}
            profile = _profiler(options, profiles)
            if wanted & {"create", "get", "list", "mutate"}:  # the others need the pods
                async with profile("create"):
                    report["create"] = await phase_create(target, options, ns)
            if "get" in wanted:
                async with profile("get"):
                    report["get"] = await phase_get(target, options, ns)
            if "list" in wanted:
                async with profile("list"):
                    report["list"] = await phase_list(target, options, ns)
            if "mutate" in wanted:
                async with profile("mutate"):
                    report["mutating_at_rate"] = await phase_mutate(target, options, ns, rate_ns)
            if "watch" in wanted:
                async with profile("watch"):
                    report["watch"] = await phase_watch(target, options, watch_ns)
            if profiles:
                report["profile"] = profiles
        report["api_overhead"] = _overhead(report)
        report["targets"] = _targets(report)
        return report
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _profiler(
    options: BenchOptions, profiles: JSON
) -> Callable[[str], contextlib.AbstractAsyncContextManager[None]]:
    """``profile(phase)``: a py-spy recording of the server with --profile, else nothing."""
    if options.profile_dir is None:
        return lambda _name: contextlib.nullcontext()
    from kubevisor.cli.profiling import Profiler

    pid = _SERVER_PID[0]
    if pid is None:
        raise BenchError("--profile with --server needs --server-pid")
    profiler = Profiler(pid, options.profile_dir)
    return lambda name: profiler.phase(name, profiles)


def _overhead(report: JSON) -> JSON:
    store_rate = report.get("store", {}).get("puts_per_s")
    api_rate = report.get("create", {}).get("per_s")
    if store_rate is None or api_rate is None:
        return {}
    return {
        "store_puts_per_s": store_rate,
        "api_creates_per_s": api_rate,
        "store_over_api": _r(store_rate / api_rate, 2) if api_rate else None,
    }


def _targets(report: JSON) -> JSON:
    measured = {
        "creates_per_s": report.get("create", {}).get("per_s"),
        "gets_per_s": report.get("get", {}).get("per_s"),
        "mutating_p99_ms_at_rate": report.get("mutating_at_rate", {}).get("p99_ms"),
        "list_10k_pods_s": report.get("list", {}).get("json", {}).get("p50_s"),
        "watch_p99_ms": report.get("watch", {}).get("from_ack", {}).get("p99_ms"),
    }
    out: JSON = {}
    for name, (op, limit) in TARGETS.items():
        value = measured[name]
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        out[name] = {"target": f"{op} {limit:g}", "measured": value, "met": met}
    return out
