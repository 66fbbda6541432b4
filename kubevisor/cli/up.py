"""``kubevisor up``: one control plane in the foreground.

Called by :mod:`kubevisor.cli.main`. Opens the store, builds the apiserver
configuration from the built-in kinds, serves it over TLS with the
credentials in ``<data-dir>/pki`` (created on first start), writes
``<data-dir>/kubeconfig``, starts the controller manager (by default as a
child process, :mod:`kubevisor.cli.controllers`, so its informers do not
compete with the apiserver's event loop; ``--controllers in-process`` runs
it as a task here; either way it talks to the API over HTTPS like any
client), creates the system
namespaces (default, kube-system, ...) through the API as kube-apiserver's
bootstrap does, and runs until SIGINT or
SIGTERM, then stops the controllers, the server and the store, in that
order, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubevisor.apiserver.config import ServerConfig
from kubevisor.apiserver.server import ServedURL, run_until_signalled, serve

log = logging.getLogger("kubevisor")
CONTROLLERS_STOP_SECONDS = 5.0
CONTROLLER_MODES = ("in-process", "process", "none")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True, slots=True)
class UpOptions:
    data_dir: Path
    host: str
    port: int
    store_url: str = "sqlite"
    node: bool = True
    extra_sans: tuple[str, ...] = ()
    controllers: str = "process"  # a child process, or "in-process", or "none"
    on_ready: Callable[[ServedURL], None] | None = field(default=None, compare=False)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces) -> (host, port)."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    return host, int(port_text)


def run_up(options: UpOptions) -> int:
    """Run the control plane until signalled; the process exit status."""
    return int(run_until_signalled(lambda stop: _up(options, stop)))


async def _up(options: UpOptions, stop: asyncio.Event) -> int:
    from kubevisor.api.builtin import builtin_registry
    from kubevisor.store import open_store

    options.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(options.store_url, data_dir=options.data_dir)
    await store.start()
    config = ServerConfig(store=store, registry=builtin_registry())
    try:
        async with serve(
            config,
            options.host,
            options.port,
            data_dir=options.data_dir,
            extra_sans=options.extra_sans,
        ) as url:
            kubeconfig = url.kubeconfig.resolve()
            try:
                await ensure_system_namespaces(url)
            except httpx.HTTPError as exc:
                log.warning("could not create the system namespaces: %s", exc)
            if options.on_ready is not None:
                options.on_ready(url)
            log.info(
                "kubevisor ready at %s (store %s); kubeconfig %s — export KUBECONFIG=%s",
                url, options.store_url, kubeconfig, kubeconfig,
            )
            if options.node:
                log.info("no node agent started: the node agent comes with a later issue")
            async with controllers_running(kubeconfig, mode=options.controllers):
                await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    log.info("kubevisor stopped")
    return 0


async def ensure_system_namespaces(url: ServedURL) -> None:
    """Create default, kube-system, kube-public and kube-node-lease through the
    API if absent, as kube-apiserver's bootstrap does (409 means present)."""
    context = ssl.create_default_context(cadata=url.credentials.ca_pem.decode())
    async with httpx.AsyncClient(base_url=str(url), verify=context, headers=url.headers,
                                 timeout=30) as http:
        for name in SYSTEM_NAMESPACES:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            response = await http.post("/api/v1/namespaces", json=body)
            if response.status_code not in (201, 409):
                log.warning("could not create namespace %s: %s %s", name,
                            response.status_code, response.text[:200])


@contextlib.asynccontextmanager
async def controllers_running(kubeconfig: Path, *, mode: str = "in-process") -> AsyncIterator[None]:
    """Run the controller manager, if this build has one, for the duration:
    as a task of this process (``in-process``), as a child process
    (``process``), or not at all (``none``). If it fails meanwhile, the
    failure is logged and the server keeps serving."""
    assert mode in CONTROLLER_MODES, f"controllers mode {mode!r} not in {CONTROLLER_MODES}"
    runner = _controller_runner()
    if runner is None or mode == "none":
        log.info("no controller manager %s", "in this build" if runner is None else "started")
        yield
        return
    if mode == "process":
        async with _controllers_process(kubeconfig):
            yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(runner(kubeconfig, stop), name="controllers")
    task.add_done_callback(_log_failure)
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, CONTROLLERS_STOP_SECONDS)
        except TimeoutError:
            log.warning("controllers did not stop within %ss; cancelled", CONTROLLERS_STOP_SECONDS)
        except Exception:
            pass  # already logged by _log_failure


@contextlib.asynccontextmanager
async def _controllers_process(kubeconfig: Path) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubevisor.cli.controllers", str(kubeconfig), str(os.getpid()),
        stdin=asyncio.subprocess.DEVNULL,
    )
    stopping = False

    async def watch() -> None:
        code = await proc.wait()
        if not stopping:
            log.error("controller manager process exited with %s", code)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        stopping = True
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(watcher), CONTROLLERS_STOP_SECONDS)
        except TimeoutError:
            log.warning("controller manager did not stop within %ss; killed", CONTROLLERS_STOP_SECONDS)
            proc.kill()
            await watcher


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("controller manager failed", exc_info=task.exception())


def _controller_runner() -> Callable[[Path, asyncio.Event], Awaitable[None]] | None:
    if importlib.util.find_spec("kubevisor.controllers.manager") is None:
        return None
    from kubevisor.controllers import manager

    runner = getattr(manager, "run_controllers", None)
    return runner if callable(runner) else None
