"""The node agent's stream server: what kubelet serves on port 10250 for
``kubectl logs``, ``exec``, ``attach`` and ``port-forward``.

An ASGI app served by uvicorn over TLS (the node's serving certificate),
answering only requests that carry the configured bearer token (the
apiserver's; 401 otherwise). Paths, as the apiserver forwards them
(``kubevisor/apiserver/nodeproxy.py``):

- ``GET /containerLogs/NS/POD/CONTAINER?follow=..&tailLines=..`` — the
  log as chunked ``text/plain`` (:mod:`~kubevisor.node.streams.logs`);
- ``/exec/NS/POD/CONTAINER?command=..&stdin=..&stdout=..&stderr=..&tty=..``
  and ``/attach/NS/POD/CONTAINER?...`` — WebSocket upgrades speaking the
  remote-command channel protocols (:mod:`~kubevisor.node.streams.channels`);
- ``/portForward/NS/POD`` — a WebSocket tunnelling SPDY/3.1
  (:mod:`~kubevisor.node.streams.portforward`);
- ``/vmConsole/VM_UID`` — a WebSocket on a VM's serial console, binary
  frames both ways (:mod:`~kubevisor.node.streams.vmconsole`);
- ``/healthz`` — ``ok``, without a token.

Every refusal is a ``kind: Status`` with kube's reason and wording. The
agent starts it with :func:`serve_streams` and publishes the port it
yields in ``Node.status.daemonEndpoints.kubeletEndpoint.Port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import uvicorn

from kubevisor.node.streams import channels, logs, netns
from kubevisor.node.streams.errors import (
    StreamError,
    bad_request,
    internal,
    not_found,
    unauthorized,
)
from kubevisor.node.streams.portforward import TUNNEL_PROTOCOL, PortForwarder
from kubevisor.node.streams.targets import PodLookup, Targets
from kubevisor.node.streams.vmconsole import ConsoleSessions
from kubevisor.node.streams.websocket import WebSocket
from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.types import ContainerRuntime, ExecProcess, PodNetwork
from kubevisor.streaming.websocket import WebSocketProtocol

log = logging.getLogger(__name__)
DEFAULT_PORT = 10250
#: Seconds open streams get to finish when the server stops.
SHUTDOWN_GRACE = 2


@dataclass(frozen=True, slots=True)
class StreamServerConfig:
    """Where and how the stream server listens. ``port`` 0 picks a free one."""

    cert_file: str
    key_file: str
    #: The bearer token the apiserver presents (from the cluster's PKI).
    token: str
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    #: The agent's cached Pod by (namespace, name), status included: lets
    #: log requests choose containers exactly as kubelet does.
    pod_lookup: PodLookup | None = None


class StreamApp:
    """The ASGI application."""

    def __init__(self, token: str, targets: Targets, consoles: ConsoleSessions) -> None:
        assert token, "the stream server needs a token to accept"
        self.token = token.encode()
        self.targets = targets
        self.consoles = consoles

    # ------------------------------------------------------------ entry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(),
                                                                           self.token)
        return False

    @staticmethod
    def _route(scope: dict[str, Any]) -> tuple[str, list[str], dict[str, list[str]]]:
        parts = [unquote(p) for p in scope["path"].strip("/").split("/")]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        return parts[0] if parts else "", parts[1:], query

    # ------------------------------------------------------------- http

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            if scope["path"] == "/healthz":
                await _respond(send, 200, b"ok", b"text/plain")
                return
            if not self._authorized(scope):
                raise unauthorized()
            verb, args, query = self._route(scope)
            if verb == "containerLogs" and len(args) == 3:
                if scope["method"] != "GET":
                    raise StreamError(405, f"the server does not allow this method on the "
                                           f"requested resource ({scope['method']})",
                                      reason="MethodNotAllowed")
                await self._logs(send, *args, query)
            elif verb in ("exec", "attach", "portForward", "vmConsole"):
                raise bad_request("Upgrade request required")
            else:
                raise not_found("the server could not find the requested resource")
        except StreamError as exc:
            await _respond(send, exc.code, exc.body(), b"application/json")

    async def _logs(self, send: Any, namespace: str, pod: str, container: str,
                    query: dict[str, list[str]]) -> None:
        options = logs.parse_options(query, now=time.time())
        target = await self.targets.log(namespace, pod, container, previous=options.previous)

        async def running() -> bool:
            return await self.targets.is_running(target.container_id)

        chunks = logs.read_log(target.path, options, running=running,
                               superseded=lambda: self.targets.newer_attempt(target))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:  # the client went away
            return
        finally:
            await chunks.aclose()
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b""})

    # -------------------------------------------------------- websocket

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        ws = WebSocket(scope, receive, send)
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            if not self._authorized(scope):
                raise unauthorized()
            verb, args, query = self._route(scope)
            if verb in ("exec", "attach") and len(args) == 3:
                await self._remote_command(ws, verb, *args, query)
            elif verb == "portForward" and len(args) == 2:
                await self._port_forward(ws, *args)
            elif verb == "vmConsole" and len(args) == 1:
                await self.consoles.attach(ws, args[0])
            else:
                raise not_found("the server could not find the requested resource")
        except StreamError as exc:
            if not ws.accepted:
                await ws.refuse(exc)
            else:
                await ws.close(1011, exc.message[:120])
        except Exception:
            log.exception("stream %s failed", scope.get("path"))
            if not ws.accepted:
                await ws.refuse(internal("stream failed"))
            else:
                await ws.close(1011)

    async def _remote_command(self, ws: WebSocket, verb: str, namespace: str, pod: str,
                              container: str, query: dict[str, list[str]]) -> None:
        options = channels.parse_options(query)
        command = query.get("command") or []
        if verb == "exec" and not command:
            raise bad_request("you must specify a command")  # kube-apiserver: "command is required"
        protocol = channels.choose(ws.subprotocols)
        state = await self.targets.running(namespace, pod, container)
        runtime = self.targets.runtime

        async def start() -> ExecProcess:
            if verb == "exec":
                return await runtime.exec(state.id, command, tty=options.tty, stdin=options.stdin)
            return await _attach(runtime, state.id, stdin=options.stdin, tty=options.tty)

        await ws.accept(protocol)
        codec = channels.Codec(protocol)
        await channels.run_exec(ws, codec, options, command, start, attach=verb == "attach")

    async def _port_forward(self, ws: WebSocket, namespace: str, pod: str) -> None:
        if TUNNEL_PROTOCOL not in ws.subprotocols:
            raise bad_request(f"port-forward needs the {TUNNEL_PROTOCOL} protocol; "
                              f"offered: {ws.subprotocols}")
        uid, namespace_path, pod_ip = await self.targets.pod_network(namespace, pod)

        async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            if namespace_path and Path(namespace_path).exists():
                return await netns.open_in(namespace_path, port)
            if not pod_ip:
                raise OSError(f"pod {pod} has neither a network namespace nor an IP")
            return await asyncio.open_connection(pod_ip, port)

        await ws.accept(TUNNEL_PROTOCOL)
        await PortForwarder(ws, dial, pod=pod, uid=uid).run()


async def _attach(runtime: ContainerRuntime, container_id: str, *, stdin: bool,
                  tty: bool) -> ExecProcess:
    """The runtime's ``attach`` when it has one; conmon's attach socket for
    the OCI driver until its class delegates to it."""
    method = getattr(runtime, "attach", None)
    if method is not None:
        process: ExecProcess = await method(container_id, stdin=stdin, tty=tty)
        return process
    from kubevisor.runtime.oci import OciRuntime
    from kubevisor.runtime.oci.attach import attach

    if not isinstance(runtime, OciRuntime):
        raise RuntimeFailure("this container runtime cannot attach")
    return await attach(runtime, container_id, stdin=stdin, tty=tty)


async def _respond(send: Any, code: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the agent owns its process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"stream server cannot listen on {host or '*'}:{port}: "
                      f"{exc.strerror} (another node agent on this host? its --stream-port "
                      "takes 0 to pick a free port)") from exc
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve_streams(config: StreamServerConfig, runtime: ContainerRuntime,
                        network: PodNetwork | None, pods_dir: str | Path, *,
                        vms_dir: str | Path | None = None) -> AsyncIterator[int]:
    """Serve the streams on the running loop; yields the port listened on
    (the one to publish in ``Node.status.daemonEndpoints``). VM consoles
    are found under ``vms_dir`` (default: ``vms`` beside ``pods_dir``, the
    data dir's layout). On exit, open streams get ``SHUTDOWN_GRACE``
    seconds, then are cut. Raises OSError when the address cannot be bound."""
    app = StreamApp(config.token, Targets(runtime, network, pods_dir,
                                          pod_lookup=config.pod_lookup),
                    ConsoleSessions(vms_dir if vms_dir is not None
                                    else Path(pods_dir).parent / "vms"))
    sock = _bind(config.host, config.port)
    server = _Server(uvicorn.Config(
        app, http="httptools", ws=WebSocketProtocol, ws_per_message_deflate=False,
        lifespan="off", ssl_certfile=config.cert_file, ssl_keyfile=config.key_file,
        access_log=False, log_config=None, server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="node-streams")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise OSError("the stream server stopped during start-up")
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, SHUTDOWN_GRACE + 5)
        sock.close()
