"""``kubevisor up``: one control plane in the foreground.

Called by :mod:`kubevisor.cli.main`. Opens the store, builds the apiserver
configuration from the built-in kinds, serves it over TLS with the
credentials in ``<data-dir>/pki`` (created on first start), writes
``<data-dir>/kubeconfig``, starts the controller manager (by default as a
child process, :mod:`kubevisor.cli.controllers`, so its informers do not
compete with the apiserver's event loop; ``--controllers in-process`` runs
it as a task here; either way it talks to the API over HTTPS like any
client), starts the node agent for this host as another child process
(:mod:`kubevisor.cli.nodeagent`; not with ``--no-node``) with a serving
certificate for its stream server and the token the apiserver presents to
it, creates the system namespaces (default, kube-system, ...) through the
API as kube-apiserver's bootstrap does, and runs until SIGINT or SIGTERM,
then stops the node agent, the controllers, the server and the store, in
that order, and exits 0. Containers outlive the agent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kubevisor.apiserver.config import KubeletClient, ServerConfig
from kubevisor.apiserver.pki import ensure_node_credentials, ensure_pki, host_ipv4_addresses
from kubevisor.apiserver.server import ServedURL, run_until_signalled, serve
from kubevisor.cli.clusterinfo import DiscoveryError, publish_for

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
    node_name: str | None = None  # default: the host name, lower-cased
    #: The node agent's max pods, pod CIDR, network name prefix and cgroup
    #: parent (None: the agent's defaults, 110, 10.88.0.0/24, kv, /kubevisor).
    max_pods: int | None = None
    pod_cidr: str | None = None
    network_prefix: str | None = None
    cgroup_parent: str | None = None
    stream_port: int | None = None  # the node agent's stream server (10250)
    #: Node IPAM gives each Node without spec.podCIDR a /24 of this range.
    cluster_cidr: str = "10.88.0.0/16"
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
    pki_dir = options.data_dir / "pki"
    sans = [*options.extra_sans]
    if options.host not in ("", "0.0.0.0", "::"):
        sans.append(options.host)
    credentials = ensure_pki(pki_dir, extra_sans=sans)
    node_name = (options.node_name or socket.gethostname()).lower()
    _, _, agent_token = ensure_node_credentials(pki_dir, node_name, sans=host_ipv4_addresses())
    store = open_store(options.store_url, data_dir=options.data_dir)
    await store.start()
    # Where the ``kubernetes`` Service points (kube-apiserver's --advertise-address).
    advertise = options.host if options.host not in ("", "0.0.0.0", "::") \
        else (host_ipv4_addresses() or ["127.0.0.1"])[0]
    config = ServerConfig(store=store, registry=builtin_registry(),
                          kubelet_client=KubeletClient(ca_file=str(credentials.ca_file),
                                                       token=agent_token),
                          advertise_address=advertise, advertise_port=options.port)
    try:
        async with serve(
            config,
            options.host,
            options.port,
            data_dir=options.data_dir,
            extra_sans=options.extra_sans,
        ) as url:
            kubeconfig = url.kubeconfig.resolve()
            config.advertise_port = url.port  # --listen HOST:0 picks the port
            try:
                await ensure_system_namespaces(url)
            except httpx.HTTPError as exc:
                log.warning("could not create the system namespaces: %s", exc)
            try:
                await publish_kubelet_client_token(url, agent_token)
            except httpx.HTTPError as exc:
                log.warning("could not publish the node agents' stream token: %s", exc)
            try:
                await publish_for(url, listen_host=options.host)
            except (httpx.HTTPError, DiscoveryError) as exc:
                log.warning("could not publish cluster-info: %s", exc)
            if options.on_ready is not None:
                options.on_ready(url)
            log.info(
                "kubevisor ready at %s (store %s); kubeconfig %s — export KUBECONFIG=%s",
                url, options.store_url, kubeconfig, kubeconfig,
            )
            pki = pki_dir.resolve()
            manager = {"ca_cert_file": pki / "ca.crt", "ca_key_file": pki / "ca.key",
                       "cluster_cidr": options.cluster_cidr}
            async with controllers_running(kubeconfig, mode=options.controllers,
                                           manager=manager), \
                    node_agent_running(options, kubeconfig, node_name):
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


#: The Secret carrying the token the apiserver presents to node agents'
#: stream servers; ``kubevisor join`` reads it with the node's credentials.
KUBELET_CLIENT_SECRET = ("kube-system", "kubevisor-kubelet-client")


async def publish_kubelet_client_token(url: ServedURL, token: str) -> None:
    """Create (or correct) the Secret holding the apiserver's token for node
    agents, so joined nodes' stream servers accept the apiserver."""
    namespace, name = KUBELET_CLIENT_SECRET
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": name, "namespace": namespace},
              "data": {"token": base64.b64encode(token.encode()).decode()}}
    context = ssl.create_default_context(cadata=url.credentials.ca_pem.decode())
    async with httpx.AsyncClient(base_url=str(url), verify=context, headers=url.headers,
                                 timeout=30) as http:
        path = f"/api/v1/namespaces/{namespace}/secrets"
        response = await http.post(path, json=secret)
        if response.status_code == 409:
            response = await http.put(f"{path}/{name}", json=secret)
        response.raise_for_status()


@contextlib.asynccontextmanager
async def controllers_running(kubeconfig: Path, *, mode: str = "in-process",
                              manager: dict[str, Any] | None = None) -> AsyncIterator[None]:
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
        async with _controllers_process(kubeconfig, manager or {}):
            yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(runner(kubeconfig, stop, **(manager or {})), name="controllers")
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
async def _controllers_process(kubeconfig: Path, manager: dict[str, Any]) -> AsyncIterator[None]:
    args = [str(kubeconfig), str(os.getpid())]
    if manager.get("ca_cert_file") and manager.get("ca_key_file"):
        args += ["--ca-cert", str(manager["ca_cert_file"]), "--ca-key", str(manager["ca_key_file"])]
    if manager.get("cluster_cidr"):
        args += ["--cluster-cidr", str(manager["cluster_cidr"])]
    async with _child_process("controller manager", "kubevisor.cli.controllers", args):
        yield


@contextlib.asynccontextmanager
async def node_agent_running(options: UpOptions, kubeconfig: Path,
                             node_name: str) -> AsyncIterator[None]:
    """The node agent for this host as a child process
    (:mod:`kubevisor.cli.nodeagent`) while the server runs, unless
    ``--no-node``. Its containers outlive it; if it fails, the failure is
    logged and the control plane keeps serving."""
    if not options.node:
        log.info("no node agent started (--no-node)")
        yield
        return
    pki_dir = (options.data_dir / "pki").resolve()
    safe = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in node_name)
    args = ["--kubeconfig", str(kubeconfig), "--data-dir", str(options.data_dir.resolve()),
            "--node-name", node_name, "--parent-pid", str(os.getpid()),
            "--stream-cert", str(pki_dir / f"node-{safe}.crt"),
            "--stream-key", str(pki_dir / f"node-{safe}.key"),
            "--stream-token-file", str(pki_dir / "kubelet-client.token")]
    for flag, value in (("--max-pods", options.max_pods), ("--pod-cidr", options.pod_cidr),
                        ("--network-prefix", options.network_prefix),
                        ("--cgroup-parent", options.cgroup_parent),
                        ("--stream-port", options.stream_port)):
        if value is not None:
            args += [flag, str(value)]
    async with _child_process("node agent", "kubevisor.cli.nodeagent", args):
        yield


@contextlib.asynccontextmanager
async def _child_process(what: str, module: str, args: list[str]) -> AsyncIterator[None]:
    """``python -m module *args`` for the duration; SIGTERM on the way out,
    SIGKILL if it does not stop within CONTROLLERS_STOP_SECONDS."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args,
                                                stdin=asyncio.subprocess.DEVNULL)
    stopping = False

    async def watch() -> None:
        code = await proc.wait()
        if not stopping:
            log.error("%s process exited with %s", what, code)

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
            log.warning("%s did not stop within %ss; killed", what, CONTROLLERS_STOP_SECONDS)
            proc.kill()
            await watcher


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("controller manager failed", exc_info=task.exception())


def _controller_runner() -> Callable[..., Awaitable[None]] | None:
    if importlib.util.find_spec("kubevisor.controllers.manager") is None:
        return None
    from kubevisor.controllers import manager

    runner = getattr(manager, "run_controllers", None)
    return runner if callable(runner) else None
