"""Liveness, readiness and startup probes of one running container.

A :class:`ContainerProber` runs each configured probe on its own schedule
(initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold,
failureThreshold) until cancelled: ``exec`` through
``ContainerRuntime.exec``, ``httpGet`` from the host to the pod IP,
``tcpSocket`` likewise. Liveness and readiness wait for the startup probe.
Results go to a :class:`ProbeResults` the pod worker reads into
:class:`~kubevisor.node.podstate.PodState`; every change calls
``on_change`` (the worker requeues the pod), every failure posts an
Unhealthy event through ``on_event``. :func:`run_probe` (one attempt) is
the part tests call directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.types import ContainerRuntime

JSON = dict[str, Any]
KINDS = ("startupProbe", "livenessProbe", "readinessProbe")
LABEL = {"startupProbe": "Startup", "livenessProbe": "Liveness", "readinessProbe": "Readiness"}


@dataclass(slots=True)
class ProbeResults:
    """Per container id, shared with the worker."""

    ready: dict[str, bool] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    unhealthy: dict[str, str] = field(default_factory=dict)

    def forget(self, cid: str) -> None:
        self.ready.pop(cid, None)
        self.started.discard(cid)
        self.unhealthy.pop(cid, None)


def _port(container: JSON, port: Any) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in the container's ports")


async def run_probe(probe: JSON, *, runtime: ContainerRuntime, container_id: str,
                    container: JSON, pod_ip: str) -> tuple[bool, str]:
    """One attempt: (success, output or why it failed)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
        # cancellation that arrives as the awaited call finishes (a refused
        # connection, say), and the prober would then never stop.
        if "exec" in probe:
            async with asyncio.timeout(timeout):
                return await _exec(runtime, container_id, probe["exec"].get("command") or [])
        if "httpGet" in probe:
            return await _http(probe["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in probe:
            spec = probe["tcpSocket"]
            host = spec.get("host") or pod_ip
            port = _port(container, spec.get("port"))
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(host, port)
            except TimeoutError:
                return False, f"dial tcp {host}:{port}: i/o timeout"
            except OSError as exc:
                return False, f"dial tcp {host}:{port}: connect: {exc.strerror or exc}"
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
    except TimeoutError:
        return False, f"command timed out after {timeout:g}s"
    except (RuntimeFailure, ValueError) as exc:
        return False, str(exc)
    return False, "probe has no handler"


async def _exec(runtime: ContainerRuntime, cid: str, argv: list[str]) -> tuple[bool, str]:
    proc = await runtime.exec(cid, argv)
    chunks: list[bytes] = []
    try:
        while (chunk := await proc.read()) is not None:
            chunks.append(chunk[1])
        code = await proc.wait()
    except BaseException:
        with contextlib.suppress(Exception):
            await proc.kill()
        raise
    return code == 0, b"".join(chunks).decode(errors="replace")[:1024]


async def _http(spec: JSON, container: JSON, pod_ip: str, timeout: float) -> tuple[bool, str]:
    scheme = str(spec.get("scheme") or "HTTP").lower()
    host = spec.get("host") or pod_ip
    port = _port(container, spec.get("port"))
    path = spec.get("path") or "/"
    url = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.32")
    async with httpx.AsyncClient(verify=False, timeout=timeout,  # kubelet does not verify probes
                                 follow_redirects=True) as http:
        try:
            resp = await http.get(url, headers=headers)
        except httpx.TimeoutException:
            return False, f'Get "{url}": context deadline exceeded'
        except httpx.HTTPError as exc:
            return False, f'Get "{url}": {exc}'
    if 200 <= resp.status_code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {resp.status_code}"


class ContainerProber:
    def __init__(self, *, runtime: ContainerRuntime, container_id: str, container: JSON,
                 pod_ip: str, results: ProbeResults, on_change: Callable[[], None],
                 on_event: Callable[[str, str], Awaitable[None]],
                 started_at: float = 0.0) -> None:
        self.runtime = runtime
        self.cid = container_id
        self.container = container
        self.pod_ip = pod_ip
        self.results = results
        self._on_change = on_change
        self._on_event = on_event
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._startup_done = asyncio.Event()
        if not container.get("startupProbe"):
            self._startup_done.set()

    def start(self) -> None:
        for kind in KINDS:
            if self.container.get(kind):
                self._tasks.append(asyncio.create_task(self._loop(kind),
                                                       name=f"probe-{kind}-{self.cid}"))

    async def stop(self) -> None:
        self._stopped = True  # a loop whose cancellation got lost ends at its next round
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def _loop(self, kind: str) -> None:
        probe = self.container[kind]
        if kind != "startupProbe":
            await self._startup_done.wait()
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        period = float(probe.get("periodSeconds", 10))
        need_ok = int(probe.get("successThreshold", 1))
        need_fail = int(probe.get("failureThreshold", 3))
        oks = fails = 0
        while not self._stopped:
            ok, output = await run_probe(probe, runtime=self.runtime, container_id=self.cid,
                                         container=self.container, pod_ip=self.pod_ip)
            if ok:
                oks, fails = oks + 1, 0
            else:
                oks, fails = 0, fails + 1
                if self._stopped:
                    return
                await self._on_event("Unhealthy", f"{LABEL[kind]} probe failed: {output}")
            if kind == "readinessProbe":
                if ok and oks >= need_ok and not self.results.ready.get(self.cid):
                    self.results.ready[self.cid] = True
                    self._on_change()
                elif not ok and fails >= need_fail and self.results.ready.get(self.cid, True):
                    self.results.ready[self.cid] = False
                    self._on_change()
            elif kind == "startupProbe":
                if ok:
                    self.results.started.add(self.cid)
                    self._startup_done.set()
                    self._on_change()
                    return
                if fails >= need_fail:
                    self._fail("startup")
                    return
            elif not ok and fails >= need_fail:
                self._fail("liveness")
                return
            await asyncio.sleep(period)

    def _fail(self, what: str) -> None:
        self.results.unhealthy[self.cid] = (
            f"Container {self.container['name']} failed {what} probe, will be restarted")
        self._on_change()
