"""A lean HTTP/1.1 keep-alive client over asyncio + TLS, for load generation.

httpx and aiohttp spend far more CPU per request than the server under
test can afford to lose on a 2-core machine; this client is one asyncio
protocol with httptools' response parser, one request in flight per
connection, request heads prebuilt once. It is only for the benchmark
workers (:mod:`kubevisor.cli.loadgen.jobs`); everything else uses
:mod:`kubevisor.client`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools


class HTTPError(Exception):
    """The connection broke or the response could not be parsed."""


class Endpoint:
    """Where and how to connect: host, port, TLS context, auth header."""

    def __init__(self, url: str, *, ca_pem: str | None, token: str | None) -> None:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https"), f"unsupported URL {url!r}"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl.create_default_context(cadata=ca_pem) if ca_pem else _insecure()
        host_header = parts.netloc.encode()
        auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
        self.common = b"Host: " + host_header + b"\r\n" + auth

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            Connection, self.host, self.port, ssl=self.ssl,
            server_hostname=self.host if self.ssl else None,
        )
        assert isinstance(protocol, Connection)
        protocol.endpoint = self
        return protocol


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`request` awaits a whole response,
    :meth:`stream` delivers a streamed body (a watch) chunk by chunk."""

    endpoint: Endpoint

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.chunks: list[bytes] = []
        self.on_chunk: Callable[[bytes], None] | None = None
        self.headers_done: asyncio.Future[int] | None = None
        self.done: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's SSL transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HTTPError(f"bad response: {exc}"))
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HTTPError(f"connection lost: {exc}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.chunks = []

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.headers_done is not None and not self.headers_done.done():
            self.headers_done.set_result(self.status)

    def on_body(self, body: bytes) -> None:
        if self.on_chunk is not None:
            self.on_chunk(body)
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result((self.status, b"".join(self.chunks)))
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        for future in (self.headers_done, self.done):
            if future is not None and not future.done():
                future.set_exception(exc)

    # requests
    def send(self, method: str, path: str, body: bytes = b"", *, content_type: str = "application/json",
             accept: str = "application/json") -> asyncio.Future[tuple[int, bytes]]:
        if self.closed or self.transport is None:
            raise HTTPError("connection closed")
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        head = (
            f"{method} {path} HTTP/1.1\r\n".encode()
            + self.endpoint.common
            + b"Accept: " + accept.encode() + b"\r\n"
        )
        if body or method in ("POST", "PUT", "PATCH"):
            head += b"Content-Type: " + content_type.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        self.transport.write(head + b"\r\n" + body)
        return self.done

    async def request(self, method: str, path: str, body: bytes = b"", **kwargs: str) -> tuple[int, bytes]:
        return await self.send(method, path, body, **kwargs)

    async def stream(self, path: str, on_chunk: Callable[[bytes], None]) -> int:
        """Start a GET whose body streams into ``on_chunk``; returns the status once
        the headers are in (the body keeps flowing until the server ends it)."""
        self.on_chunk = on_chunk
        self.headers_done = asyncio.get_running_loop().create_future()
        self.send("GET", path)
        return await self.headers_done

    def close(self) -> None:
        for future in (self.headers_done, self.done):
            if future is not None and not future.done():
                future.cancel()
        if self.transport is not None:
            self.transport.close()
