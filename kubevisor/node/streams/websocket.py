"""A WebSocket over ASGI's ``receive``/``send``, as the stream handlers use it.

Small on purpose: accept with a subprotocol (or refuse with a Status body
through ASGI's ``websocket.http.response`` extension), receive one message
at a time (None once the peer has gone), send binary or text messages from
any task, close once. Built by :mod:`kubevisor.node.streams.server` for
:mod:`~kubevisor.node.streams.channels` and
:mod:`~kubevisor.node.streams.portforward`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kubevisor.node.streams.errors import StreamError

Receive = Any
Send = Any


class WebSocket:
    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._lock = asyncio.Lock()
        self.accepted = False
        self.closed = False

    @property
    def subprotocols(self) -> list[str]:
        return list(self.scope.get("subprotocols") or [])

    async def accept(self, subprotocol: str | None) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        self.accepted = True

    async def refuse(self, error: StreamError) -> None:
        """Answer the upgrade with the error's Status (or a policy close
        when the server cannot send an HTTP response)."""
        self.closed = True
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
            await self._send({"type": "websocket.http.response.start", "status": error.code,
                              "headers": [(b"content-type", b"application/json")]})
            await self._send({"type": "websocket.http.response.body", "body": error.body()})
        else:
            await self._send({"type": "websocket.close", "code": 1008})

    async def receive(self) -> bytes | str | None:
        """The next message, or None once the connection is closed."""
        while not self.closed:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.closed = True
                return None
            if kind == "websocket.receive":
                data = message.get("bytes")
                return data if data is not None else (message.get("text") or "")
        return None

    async def send(self, data: bytes | str) -> bool:
        """Send one message; False when the connection is gone."""
        if self.closed:
            return False
        message = ({"type": "websocket.send", "bytes": data} if isinstance(data, bytes)
                   else {"type": "websocket.send", "text": data})
        try:
            async with self._lock:
                await self._send(message)
        except (OSError, RuntimeError):  # uvicorn: disconnected / closed
            self.closed = True
            return False
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, RuntimeError):
            async with self._lock:
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
