"""Benchmark worker: one process that runs one load job against the API.

Started by :mod:`kubevisor.cli.benchapi` as ``python -m
kubevisor.cli.loadgen``. Protocol on stdin/stdout, one JSON document per
line: the job arrives on stdin; the worker opens its connections and prints
``{"ready": true}``; it starts on a ``go`` line, and prints its result
(latencies in milliseconds, error counts by status, its own CPU seconds) when
done. Streaming jobs (``watch``) run until a ``stop`` line. Jobs:
``create``, ``get``, ``mutate`` (open loop at a fixed rate), ``list``,
``watch`` and ``write`` (timestamped creates for the watchers).
"""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from kubevisor.cli.loadgen.http import Connection, Endpoint, HTTPError

JSON = dict[str, Any]
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
MERGE_PATCH = "application/merge-patch+json"


def pod_body(name: str, *, worker: int, annotations: dict[str, str] | None = None) -> bytes:
    """A small but realistic Pod (about 400 bytes). Its ``schedulerName``
    names no running scheduler, so the control plane's own writes (a
    PodScheduled=False status) do not add to what the benchmark measures."""
    metadata: JSON = {"name": name, "labels": {"app": "bench", "worker": str(worker)}}
    if annotations:
        metadata["annotations"] = annotations
    return orjson.dumps({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "schedulerName": "kubevisor-bench",
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }],
        },
    })


def pod_name(worker: int, index: int) -> str:
    return f"p-{worker}-{index}"


class Recorder:
    """Latencies (ms) and error counts of one job."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.by_verb: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []

    def record(self, verb: str, status: int, body: bytes, ms: float) -> None:
        if 200 <= status < 300:
            self.latencies.append(round(ms, 3))
            self.by_verb.setdefault(verb, []).append(round(ms, 3))
        else:
            self.errors[f"{verb} {status}"] += 1
            if len(self.samples) < 3:
                self.samples.append(body[:300].decode(errors="replace"))

    def failure(self, verb: str, exc: Exception) -> None:
        self.errors[f"{verb} {type(exc).__name__}"] += 1
        if len(self.samples) < 3:
            self.samples.append(str(exc)[:300])

    def result(self) -> JSON:
        return {
            "latencies_ms": self.latencies,
            "by_verb_ms": self.by_verb,
            "errors": dict(self.errors),
            "error_samples": self.samples,
        }


async def _connections(endpoint: Endpoint, count: int) -> list[Connection]:
    return list(await asyncio.gather(*(endpoint.connect() for _ in range(count))))


async def _call(conn: Connection, rec: Recorder, verb: str, method: str, path: str,
                body: bytes = b"", start: float | None = None, **kwargs: str) -> Connection:
    """One request; latency counts from ``start`` (the intended send time in
    open-loop jobs, so queueing is not hidden) or from now. Returns a usable
    connection (a fresh one if this one broke)."""
    t0 = time.perf_counter() if start is None else start
    try:
        status, data = await conn.request(method, path, body, **kwargs)
    except HTTPError as exc:
        rec.failure(verb, exc)
        conn.close()
        return await conn.endpoint.connect()
    rec.record(verb, status, data, (time.perf_counter() - t0) * 1000)
    return conn


# -- jobs --------------------------------------------------------------------
# Each job is prepared (connections opened) before "go", then run.


async def job_create(endpoint: Endpoint, job: JSON) -> Callable[[], Awaitable[JSON]]:
    conns = await _connections(endpoint, job["conns"])
    ns, worker = job["namespace"], job["worker"]
    indices = iter(range(job["start"], job["stop"]))
    rec = Recorder()
    path = f"/api/v1/namespaces/{ns}/pods"

    async def loop(conn: Connection) -> None:
        for index in indices:
            conn = await _call(conn, rec, "create", "POST", path, pod_body(pod_name(worker, index), worker=worker))

    async def run() -> JSON:
        await asyncio.gather(*(loop(c) for c in conns))
        return rec.result()

    return run


async def job_get(endpoint: Endpoint, job: JSON) -> Callable[[], Awaitable[JSON]]:
    conns = await _connections(endpoint, job["conns"])
    ns, worker, count = job["namespace"], job["worker"], job["count"]
    names = [pod_name(worker, i) for i in range(job["start"], job["stop"])]
    rec = Recorder()
    rng = random.Random(worker)
    remaining = iter(range(count))

    async def loop(conn: Connection) -> None:
        for _ in remaining:
            path = f"/api/v1/namespaces/{ns}/pods/{rng.choice(names)}"
            conn = await _call(conn, rec, "get", "GET", path)

    async def run() -> JSON:
        await asyncio.gather(*(loop(c) for c in conns))
        return rec.result()

    return run


async def job_mutate(endpoint: Endpoint, job: JSON) -> Callable[[], Awaitable[JSON]]:
    """Open loop at ``rate`` per second for ``duration`` s: creates in
    ``create_namespace``, merge patches and deletes of this worker's pods in
    ``namespace`` (3:2:1). Latency runs from the intended send time."""
    conns = await _connections(endpoint, job["conns"])
    ns, create_ns, worker = job["namespace"], job["create_namespace"], job["worker"]
    rate, duration = float(job["rate"]), float(job["duration"])
    own = list(range(job["start"], job["stop"]))
    to_delete = iter(own[len(own) // 2:])
    to_patch = own[: len(own) // 2]
    rng = random.Random(worker)
    rec = Recorder()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)

    def next_op(i: int) -> tuple[str, str, str, bytes, str]:
        kind = i % 6
        if kind < 3:
            name = f"m-{worker}-{i}"
            return "create", "POST", f"/api/v1/namespaces/{create_ns}/pods", pod_body(name, worker=worker), "application/json"
        victim = next(to_delete, None) if kind == 5 else None
        if victim is None:
            name = pod_name(worker, rng.choice(to_patch))
            patch = orjson.dumps({"metadata": {"labels": {"rev": str(i)}}})
            return "patch", "PATCH", f"/api/v1/namespaces/{ns}/pods/{name}", patch, MERGE_PATCH
        name = pod_name(worker, victim)
        return "delete", "DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", b"", "application/json"

    async def fire(intended: float, op: tuple[str, str, str, bytes, str]) -> None:
        conn = await idle.get()
        verb, method, path, body, content_type = op
        conn = await _call(conn, rec, verb, method, path, body, start=intended, content_type=content_type)
        idle.put_nowait(conn)

    async def run() -> JSON:
        total = int(rate * duration)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            intended = start + i / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(intended, next_op(i))))
        await asyncio.gather(*tasks)
        out = rec.result()
        out["sent"] = total
        out["send_seconds"] = time.perf_counter() - start
        return out

    return run


async def job_list(endpoint: Endpoint, job: JSON) -> Callable[[], Awaitable[JSON]]:
    conn = await endpoint.connect()
    path = f"/api/v1/namespaces/{job['namespace']}/pods"

    async def run() -> JSON:
        out: JSON = {}
        nonlocal conn
        for label, accept in (("json", "application/json"), ("table", TABLE_ACCEPT)):
            times, sizes, items, statuses = [], [], [], []
            for _ in range(job["repeats"]):
                t0 = time.perf_counter()
                status, body = await conn.request("GET", path, accept=accept)
                times.append(round((time.perf_counter() - t0) * 1000, 3))
                statuses.append(status)
                sizes.append(len(body))
                if status == 200 and not items:  # parse once: the client's CPU is not the point
                    doc = orjson.loads(body)
                    items.append(len(doc.get("items") or doc.get("rows") or []))
            out[label] = {"latencies_ms": times, "bytes": sizes, "items": items, "statuses": statuses}
        return out

    return run


async def job_watch(endpoint: Endpoint, job: JSON) -> Callable[[], Awaitable[JSON]]:
    """``watchers`` watch streams on one namespace; records when each event
    named ``w-*`` arrives (perf_counter is system-wide CLOCK_MONOTONIC)."""
    path = f"/api/v1/namespaces/{job['namespace']}/pods?watch=true&allowWatchBookmarks=false"
    if job.get("resource_version"):
        path += f"&resourceVersion={job['resource_version']}"
    received: list[tuple[str, float]] = []
    bad: Counter[str] = Counter()
    conns = await _connections(endpoint, job["watchers"])

    def make_reader() -> Callable[[bytes], None]:
        buffer = bytearray()

        def on_chunk(chunk: bytes) -> None:
            now = time.perf_counter()
            buffer.extend(chunk)
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if not line.strip():
                    continue
                try:
                    event = orjson.loads(line)
                    received.append((event["object"]["metadata"]["name"], now))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    bad[line[:40].decode(errors="replace")] += 1

        return on_chunk

    statuses = await asyncio.gather(*(c.stream(path, make_reader()) for c in conns))

    async def run() -> JSON:
        await _stop_line()
        for conn in conns:
            conn.close()
        return {"received": received, "statuses": {str(k): v for k, v in Counter(statuses).items()}, "bad_lines": dict(bad)}

    return run


async def job_write(endpoint: Endpoint, job: JSON) -> Callable[[], Awaitable[JSON]]:
    """Creates ``count`` pods at ``rate``/s; reports when each was sent and acknowledged."""
    conn = await endpoint.connect()
    path = f"/api/v1/namespaces/{job['namespace']}/pods"
    rate, count = float(job["rate"]), int(job["count"])

    async def run() -> JSON:
        records: list[tuple[str, float, float, int]] = []
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            name = f"w-{i}"
            sent = time.perf_counter()
            status, _ = await conn.request("POST", path, pod_body(name, worker=0))
            records.append((name, sent, time.perf_counter(), status))
        return {"writes": records}

    return run


JOBS = {
    "create": job_create,
    "get": job_get,
    "mutate": job_mutate,
    "list": job_list,
    "watch": job_watch,
    "write": job_write,
}


async def _readline() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def _stop_line() -> None:
    while await _readline() not in ("stop", ""):
        pass


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    job = orjson.loads(await _readline())
    endpoint = Endpoint(job["url"], ca_pem=job.get("ca_pem"), token=job.get("token"))
    run = await JOBS[job["job"]](endpoint, job)
    _emit({"ready": True})
    if await _readline() != "go":
        return
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    result = await run()
    result["wall_s"] = time.perf_counter() - t0
    result["cpu_s"] = _cpu_seconds() - cpu0
    _emit(result)


def _emit(doc: JSON) -> None:
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    sys.stdout.buffer.flush()
