"""A lean HTTP/1.1 connection pool for the scheduler's hot writes.

Binding a pod is one small POST, a thousand times a second; through httpx
each costs the scheduler more CPU than choosing the node (its pool
re-checks every connection on every request). :class:`LeanPool` keeps a
few keep-alive TLS connections (asyncio protocols with httptools' response
parser), one request in flight on each, and answers ``(status, body)``;
the caller turns a non-2xx answer into the client's error tree
(:func:`kubevisor.client.errors.error_from_status`), so callers see the
same exceptions as through :class:`~kubevisor.client.Client`.
:func:`lean_pool_for` builds one with the server, token and TLS settings
of a Client (:meth:`~kubevisor.client.Client.connection`), or returns None
when the Client has none (the scheduler then uses the Client). Used by
:mod:`.scheduler` for bindings and events.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

from kubevisor.client import Client, TransportError
from kubevisor.client.errors import error_from_status

JSON = dict[str, Any]


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: list[bytes] = []
        self.status = 0
        self.done: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"bad response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(TransportError(f"connection lost: {exc!r}"))

    def on_message_begin(self) -> None:
        self.chunks = []

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result((self.status, b"".join(self.chunks)))
        if not self.parser.should_keep_alive():
            self.close()

    def _fail(self, exc: Exception) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)

    def send(self, head: bytes, body: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self.closed or self.transport is None:
            raise TransportError("connection closed")
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        return self.done

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanPool:
    """Up to ``size`` keep-alive connections to one server."""

    def __init__(self, server: str, *, authorization: str | None,
                 ssl_context: ssl.SSLContext | None, size: int = 8) -> None:
        parts = urlsplit(server)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl_context if parts.scheme == "https" else None
        common = f"Host: {parts.netloc}\r\nAccept: application/json\r\n"
        if authorization:
            common += f"Authorization: {authorization}\r\n"
        self._common = common.encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection, self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None)
        except OSError as exc:
            raise TransportError(f"connect {self.host}:{self.port}: {exc!r}") from exc
        return conn

    async def request(self, method: str, path: str, body: JSON, *,
                      content_type: str = "application/json") -> JSON:
        """One request; the decoded answer, or the client's ApiError/TransportError."""
        data = orjson.dumps(body)
        head = (f"{method} {path} HTTP/1.1\r\n".encode() + self._common
                + f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        async with self._slots:
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed:
                    conn = candidate
                    break
            if conn is None:
                conn = await self._connect()
            try:
                status, raw = await conn.send(head, data)
            except BaseException:
                conn.close()
                raise
            if not conn.closed:
                self._idle.append(conn)
        try:
            doc = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            doc = None
        if 200 <= status < 300 and isinstance(doc, dict):
            return doc
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            raise error_from_status(doc, http_code=status)
        raise error_from_status({"message": raw[:300].decode(errors="replace")}, http_code=status)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def lean_pool_for(client: Client, *, size: int = 8) -> LeanPool | None:
    """A pool speaking to ``client``'s server as ``client`` does (its
    :meth:`~kubevisor.client.Client.connection`: URL, token, TLS trust), or
    None when the client has no direct connection (the scheduler then uses
    the client)."""
    conn = client.connection()
    if conn is None:
        return None
    return LeanPool(conn.server, authorization=conn.authorization,
                    ssl_context=conn.ssl_context, size=size)
