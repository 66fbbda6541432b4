"""``kubectl port-forward``: the portforward.k8s.io protocol over SPDY,
tunnelled in a WebSocket.

kubectl offers ``SPDY/3.1+portforward.k8s.io``; every binary message then
carries bytes of one SPDY/3.1 connection (:mod:`~kubevisor.node.streams.spdyconn`).
For each local connection kubectl opens two streams with headers
``streamtype`` (``error`` then ``data``), ``port`` and ``requestid``; once
both of a request id are there, the data stream is piped to
``localhost:PORT`` inside the pod's network namespace
(:mod:`~kubevisor.node.streams.netns`; the pod IP when there is no
namespace path). When the pod closes, the data stream gets FIN, the error
stream is closed, and kubectl resets the data stream. A failure (nothing
listening, say) is written on the error stream as kubelet words it, which
kubectl prints. Invalid stream headers reset the stream; a pair whose
second stream does not come within ``STREAM_CREATION_TIMEOUT`` gets the
kubelet's timeout message. Called by :mod:`kubevisor.node.streams.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kubevisor.node.streams import spdy
from kubevisor.node.streams.spdyconn import Connection, Stream
from kubevisor.node.streams.websocket import WebSocket

log = logging.getLogger(__name__)

TUNNEL_PREFIX = "SPDY/3.1+"
PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = TUNNEL_PREFIX + PROTOCOL
STREAM_CREATION_TIMEOUT = 30.0
READ_SIZE = 32 * 1024

Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def stream_refusal(stream: Stream) -> str | None:
    """Why kubelet would refuse a new stream (its wording), or None."""
    port_text = stream.header("port")
    if not port_text:
        return '"port" header is required'
    try:
        port = int(port_text)
    except ValueError:
        return f'unable to parse "{port_text}" as a port'
    if not 0 < port < 65536:
        return f'port "{port_text}" must be > 0' if port < 1 else f'unable to parse "{port_text}" as a port'
    kind = stream.header("streamtype")
    if not kind:
        return '"streamType" header is required'
    if kind not in ("error", "data"):
        return f'invalid stream type "{kind}"'
    return None


@dataclass
class _Pair:
    request_id: str
    error: Stream | None = None
    data: Stream | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)


class PortForwarder:
    """One port-forward WebSocket: pairs streams and forwards each pair."""

    def __init__(self, ws: WebSocket, dial: Dial, *, pod: str, uid: str) -> None:
        self.ws = ws
        self.dial = dial
        self.pod = pod
        self.uid = uid
        self.conn = Connection(self._send, accept=stream_refusal, on_stream=self._add)
        self.pairs: dict[str, _Pair] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def _send(self, data: bytes) -> bool:
        return await self.ws.send(data)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _request_id(self, stream: Stream) -> str:
        request_id = stream.header("requestid")
        if request_id:
            return request_id
        # Clients older than request ids: error stream N, data stream N+2.
        return str(stream.id if stream.header("streamtype") == "error" else stream.id - 2)

    def _add(self, stream: Stream) -> None:
        request_id = self._request_id(stream)
        pair = self.pairs.get(request_id)
        if pair is None:
            pair = self.pairs[request_id] = _Pair(request_id)
            self._spawn(self._monitor(pair))
        kind = stream.header("streamtype")
        if (kind == "error" and pair.error is not None) or (kind == "data" and pair.data is not None):
            message = f"error processing stream for request {request_id}: {kind} stream already assigned"
            self._spawn(self._write_error(pair, message))
            self._spawn(stream.reset())
            return
        if kind == "error":
            pair.error = stream
            stream.stop_reading()  # kubectl half-closes it at once and never writes
        else:
            pair.data = stream
        if pair.error is not None and pair.data is not None:
            pair.complete.set()
            self._spawn(self._forward(pair))

    async def _monitor(self, pair: _Pair) -> None:
        try:
            await asyncio.wait_for(pair.complete.wait(), STREAM_CREATION_TIMEOUT)
        except TimeoutError:
            await self._write_error(pair, f"(conn={id(self.conn):#x}, request={pair.request_id}) "
                                          "timed out waiting for streams")
            for stream in (pair.error, pair.data):
                if stream is not None:
                    await stream.reset()
        self.pairs.pop(pair.request_id, None)

    async def _write_error(self, pair: _Pair, message: str) -> None:
        if pair.error is not None:
            await pair.error.write(message.encode())

    async def _forward(self, pair: _Pair) -> None:
        assert pair.error is not None and pair.data is not None
        data, error = pair.data, pair.error
        port = int(data.header("port"))
        try:
            try:
                reader, writer = await self.dial(port)
            except OSError as exc:
                await error.write(f"error forwarding port {port} to pod {self.pod}, uid {self.uid}: "
                                  f"{exc}".encode())
                return
            try:
                await _pipe(data, reader, writer)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        finally:
            await error.close()
            await data.close()

    async def run(self) -> None:
        """Read the tunnel until the client goes; then stop every forward."""
        try:
            while True:
                message = await self.ws.receive()
                if message is None:
                    break
                if isinstance(message, str):
                    log.info("port-forward: text message on the SPDY tunnel; closing")
                    break
                try:
                    await self.conn.receive(message)
                except spdy.SpdyError as exc:
                    log.info("port-forward: %s; closing", exc)
                    await self.conn.goaway()
                    break
                if self.conn.closed:
                    break
        finally:
            self.conn.shutdown()
            for task in list(self.tasks):
                task.cancel()
            for task in list(self.tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.ws.close(1000)


async def _pipe(stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Client → pod until the client finishes (then half-close towards the
    pod); pod → client until the pod closes (then FIN). Ends when the pod
    side ends or the client resets the stream."""

    async def upstream() -> None:
        while True:
            data = await stream.read()
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if not stream.reset_by_peer and writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    async def downstream() -> None:
        while True:
            data = await reader.read(READ_SIZE)
            if not data or not await stream.write(data):
                return

    up = asyncio.create_task(upstream())
    down = asyncio.create_task(downstream())
    pending: set[asyncio.Task[None]] = {up, down}
    try:
        while not down.done():
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if up.done() and (stream.reset_by_peer or up.exception() is not None):
                break
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(asyncio.CancelledError, OSError, ConnectionError):
                await task
