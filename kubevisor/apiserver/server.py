"""Runs the apiserver's ASGI app under uvicorn over TLS.

Two entry points. :func:`serve` is an async context manager that starts the
server on the running loop and yields its URL (a :class:`ServedURL`, a
``str`` that also carries the CA, the admin token and a kubeconfig path);
tests, benchmarks and ``kubevisor up`` use it. :func:`run_until_signalled`
runs a coroutine on uvloop until SIGINT/SIGTERM (the CLI's foreground mode):
the first signal asks for a clean stop, a second one kills the process.

TLS asks clients for a certificate without requiring one; one the
handshake verified against the cluster CA reaches the app as the ASGI
``tls`` scope extension (:mod:`kubevisor.apiserver.clientcerts`), added by
the HTTP protocol subclass here (uvicorn itself does not put it in the
scope; WebSocket upgrades do not carry it).

Shutdown order: stop accepting connections, close idle keep-alive
connections, let in-flight requests finish, then close the store, which ends
every store watcher and so every open watch stream; uvicorn then waits for
the remaining connections (at most ``GRACE_SECONDS``; idle TLS connections
are aborted once no handler runs) and runs the app's lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from kubevisor.apiserver.clientcerts import tls_extension
from kubevisor.apiserver.config import ServerConfig
from kubevisor.apiserver.pki import ADMIN_USER, Credentials, ensure_pki, write_kubeconfig
from kubevisor.streaming.websocket import WebSocketProtocol

ASGIApp = Callable[..., Awaitable[None]]
GRACE_SECONDS = 5
BACKLOG = 4096
KEEP_ALIVE_SECONDS = 120
GC_GEN0_THRESHOLD = 20_000  # CPython's default is 700 (2,000 from 3.13)  # kubectl and client-go keep connections for 90 s idle

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """The server could not start (port in use, app startup failed)."""


class ServedURL(str):
    """``https://host:port`` of a running server; a plain ``str`` for callers
    that only want the URL, with the CA, token and kubeconfig for the rest."""

    credentials: Credentials
    kubeconfig: Path
    port: int

    def __new__(cls, url: str, *, credentials: Credentials, kubeconfig: Path, port: int) -> ServedURL:
        self = super().__new__(cls, url)
        self.credentials = credentials
        self.kubeconfig = kubeconfig
        self.port = port
        return self

    @property
    def ca_file(self) -> Path:
        return self.credentials.ca_file

    @property
    def token(self) -> str:
        return self.credentials.token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials.token}"}


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: the owner of the
    loop decides when to stop (uvicorn would otherwise re-raise the signal
    after shutdown, turning a clean SIGTERM into exit status 143)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _CoalescingTransport:
    """A transport whose writes in one event-loop iteration leave as one.

    uvicorn writes a response's head and its body separately; over TLS each
    write is a TLS record and a send() system call. Joining them before the
    loop's next iteration halves both for every ordinary response and costs
    a response no time."""

    __slots__ = ("_buffer", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(bytes(data))

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (httptools, or h11 without it) over a
    :class:`_CoalescingTransport`."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class Protocol(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            loop = asyncio.get_running_loop()
            ssl_object = transport.get_extra_info("ssl_object")
            peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            super().connection_made(_CoalescingTransport(transport, loop))
            if peer:  # verified against the CA by the handshake (CERT_OPTIONAL)
                self.app = _with_tls(self.app, tls_extension(peer))

        def send_400_response(self, msg: str) -> None:
            """A request the HTTP parser cannot read (garbage, or a method
            token httptools does not know) still gets a ``kind: Status``."""
            self.transport.write(_bad_request_bytes(msg))
            self.transport.close()

    return Protocol


def _with_tls(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    """``app`` seeing the connection's client certificate as the ASGI
    ``tls`` scope extension (uvicorn does not put it in the scope)."""

    async def with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
        await app(scope, receive, send)

    return with_tls


def _bad_request_bytes(msg: str) -> bytes:
    body = orjson.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": msg, "reason": "BadRequest", "code": 400,
    })
    head = (
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def uvicorn_config(app: ASGIApp, credentials: Credentials) -> uvicorn.Config:
    """uvicorn settings for the apiserver: httptools (h11 when httptools is
    missing), TLS with the serving certificate, no access log, long
    keep-alive, a deep backlog and no concurrency limit."""
    return uvicorn.Config(
        app,
        http=_http_protocol(),
        # WebSocket upgrades for pods/exec, attach and portforward (nodeproxy);
        # no compression, as kube-apiserver's streams.
        ws=WebSocketProtocol,
        ws_per_message_deflate=False,
        lifespan="auto",
        ssl_certfile=str(credentials.cert_file),
        ssl_keyfile=str(credentials.key_file),
        # Client certificates are asked for, not required, and checked
        # against the cluster CA (nodes authenticate with them).
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ca_certs=str(credentials.ca_file),
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        backlog=BACKLOG,
        limit_concurrency=None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host:port`` (``port=0`` picks a free one)."""
    family, type_, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def client_host(host: str) -> str:
    """The address a local client should dial for a listen address: wildcards
    become loopback; IPv6 literals get brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@contextlib.asynccontextmanager
async def serve(
    config: ServerConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    data_dir: Path | None = None,
    extra_sans: Iterable[str] = (),
    app: ASGIApp | None = None,
    close_store: bool = True,
    tune_gc: bool = True,
) -> AsyncIterator[ServedURL]:
    """Serve ``config`` (or a given ASGI ``app``) over HTTPS on the running loop.

    Credentials come from ``<data_dir>/pki`` (a temporary directory when
    ``data_dir`` is None); the admin token is added to ``config.tokens``, and
    an admin kubeconfig is written to ``<data_dir>/kubeconfig``. On exit the
    server stops as described in the module docstring and, with
    ``close_store``, the store is closed. Raises :class:`ServeError` if the
    server cannot start. With ``tune_gc`` the process's garbage collector is
    tuned for serving once the app has started (see :func:`_tune_gc`).
    """
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kubevisor-")))
        sans = [*extra_sans]
        if host not in ("", "0.0.0.0", "::"):
            sans.append(host)
        credentials = ensure_pki(data_dir / "pki", extra_sans=sans)
        if credentials.token not in config.tokens:
            config.tokens = {**config.tokens, credentials.token: ADMIN_USER}
        if app is None:
            from kubevisor.apiserver.app import create_app

            app = create_app(config)
        sock = bind_socket(host, port)
        actual_port = sock.getsockname()[1]
        server = _Server(uvicorn_config(app, credentials))
        task = asyncio.create_task(_serve(server, sock), name=f"uvicorn:{actual_port}")
        try:
            await _wait_started(server, task)
            if tune_gc:
                _tune_gc()
            url = f"https://{client_host(host)}:{actual_port}"
            kubeconfig = write_kubeconfig(
                data_dir / "kubeconfig",
                server_url=url,
                ca_pem=credentials.ca_pem,
                token=credentials.token,
            )
            yield ServedURL(url, credentials=credentials, kubeconfig=kubeconfig, port=actual_port)
        finally:
            await _stop(server, task, config if close_store else None)


def _tune_gc() -> None:
    """Move everything alive after start-up (kinds, schemas, compiled
    validators: they live as long as the server) out of the cyclic
    collector's sight, and collect the youngest generation less often.
    Measured with ``kubevisor bench api``: a Table of 10,000 pods in 0.21-0.31 s
    instead of 0.35-0.43 s; creates and gets unchanged."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


async def _serve(server: _Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits the process when lifespan startup fails
        raise ServeError(f"apiserver startup failed (exit status {exc.code})") from exc


async def _wait_started(server: _Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            exc = task.exception()
            raise ServeError("apiserver stopped during startup") from exc
        await asyncio.sleep(0.005)


async def _stop(server: _Server, task: asyncio.Task[None], config: ServerConfig | None) -> None:
    server.should_exit = True
    if config is not None:
        # Once uvicorn has stopped listening and in-flight requests had their
        # moment, closing the store ends the watch streams that would
        # otherwise hold the shutdown for GRACE_SECONDS.
        for _ in range(100):
            if task.done() or not any(s.is_serving() for s in getattr(server, "servers", [])):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        with contextlib.suppress(Exception):
            await config.store.close()
    # When every request handler is done, the connections left are idle ones
    # whose TLS shutdown waits on the client's close_notify (uvloop waits up
    # to 30 s); abort them rather than hold the shutdown.
    for _ in range(GRACE_SECONDS * 20):
        if task.done() or not server.server_state.tasks:
            break
        await asyncio.sleep(0.05)
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if transport is not None:
            transport.abort()
    try:
        await task
    except ServeError:
        log.exception("apiserver stopped with an error")


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[Any]]) -> Any:
    """Run ``main(stop)`` on uvloop in the foreground and return its result.

    The first SIGINT or SIGTERM sets ``stop`` (main should then finish
    cleanly); after that the default handlers are back, so a second signal
    ends the process at once.
    """

    async def runner() -> Any:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=_loop_factory()) as runner_:
        return runner_.run(runner())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        return None
    return uvloop.new_event_loop
