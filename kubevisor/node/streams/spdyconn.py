"""The server side of one SPDY/3.1 connection: streams the client opens,
replies, data both ways, pings, resets and go-away.

Bytes from the transport (here: the WebSocket tunnel's binary messages) go
to :meth:`Connection.receive`; frames go out through the ``send``
callable, one frame per call, serialised so the header compressor's
stream stays in order. Each SYN_STREAM becomes a :class:`Stream`, offered
to ``accept`` (which may refuse it with a reason: the stream is reset),
then answered with an empty SYN_REPLY, as Kubernetes' SPDY server does.
Client pings (odd ids) are echoed. Flow control is not enforced (neither
end of Kubernetes' SPDY streams does); instead each stream buffers a
bounded number of frames, and a full buffer holds the reading loop, so a
slow pod slows its client.

Used by :mod:`kubevisor.node.streams.portforward`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kubevisor.node.streams import spdy

log = logging.getLogger(__name__)
#: Frames buffered per stream before the reader waits.
STREAM_BUFFER = 64
#: Largest data frame sent.
FRAME_DATA = 32 * 1024

Send = Callable[[bytes], Awaitable[bool]]


class Stream:
    """One client-opened stream: read what the client sends, write back."""

    def __init__(self, conn: Connection, frame: spdy.SynStream) -> None:
        self.conn = conn
        self.id = frame.stream_id
        self.headers = frame.headers
        self._inbound: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._space = asyncio.Event()
        self.remote_closed = False  # the client sent FIN (or reset)
        self.local_closed = frame.unidirectional  # we sent FIN (or may not send)
        self.reset_by_peer = False
        self.discarding = False
        if frame.fin:
            self._remote_fin()

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower()) or [""]
        return values[0]

    # ------------------------------------------------------- from the peer

    def _remote_fin(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._inbound.put_nowait(None)

    async def _data(self, data: bytes) -> None:
        while self._inbound.qsize() >= STREAM_BUFFER and not self.discarding:
            self._space.clear()
            await self._space.wait()
        if self.remote_closed or self.discarding or not data:
            return
        self._inbound.put_nowait(data)

    def _reset(self) -> None:
        self.reset_by_peer = True
        self.local_closed = True
        self.discarding = True
        self._drain()
        self._remote_fin()

    def _drain(self) -> None:
        while not self._inbound.empty():
            self._inbound.get_nowait()
        if self.remote_closed:
            self._inbound.put_nowait(None)
        self._space.set()

    # ---------------------------------------------------------- for users

    async def read(self) -> bytes:
        """The next piece of data; b"" once the client has finished."""
        item = await self._inbound.get()
        self._space.set()
        if item is None:
            self._inbound.put_nowait(None)  # stay at end of stream
            return b""
        return item

    def stop_reading(self) -> None:
        """Drop whatever else the client sends on this stream."""
        self.discarding = True
        self._drain()

    async def write(self, data: bytes) -> bool:
        """Send data; False once this side may no longer send."""
        for start in range(0, len(data), FRAME_DATA):
            if self.local_closed:
                return False
            if not await self.conn._send_frame(spdy.DataFrame(self.id, data[start:start + FRAME_DATA])):
                return False
        return not self.local_closed

    async def close(self) -> None:
        """Half-close: FIN on our side."""
        if not self.local_closed:
            self.local_closed = True
            await self.conn._send_frame(spdy.DataFrame(self.id, b"", spdy.FLAG_FIN))
        self.conn._forget_if_done(self)

    async def reset(self, status: int = spdy.CANCEL) -> None:
        if not (self.local_closed and self.remote_closed):
            await self.conn._send_frame(spdy.RstStream(self.id, status))
        self.local_closed = True
        self.stop_reading()
        self._remote_fin()
        self.conn._forget_if_done(self)


class Connection:
    """One SPDY connection, server side."""

    def __init__(self, send: Send, *, accept: Callable[[Stream], str | None],
                 on_stream: Callable[[Stream], None]) -> None:
        self._send = send
        self._accept = accept
        self._on_stream = on_stream
        self._reader = spdy.FrameReader()
        self._writer = spdy.FrameWriter()
        self._lock = asyncio.Lock()
        self.streams: dict[int, Stream] = {}
        self.last_stream_id = 0
        self.closed = False

    async def _send_frame(self, frame: spdy.Frame) -> bool:
        if self.closed:
            return False
        async with self._lock:  # compress and send in one order
            return await self._send(self._writer.write(frame))

    def _forget_if_done(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.streams.pop(stream.id, None)

    async def receive(self, data: bytes) -> None:
        """Handle bytes from the transport; raises SpdyError on a protocol
        violation (the caller then ends the connection)."""
        for frame in self._reader.feed(data):
            await self._handle(frame)

    async def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.DataFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is None:
                return  # gone already: ignore, as spdystream does
            await stream._data(frame.data)
            if frame.fin:
                stream._remote_fin()
                self._forget_if_done(stream)
        elif isinstance(frame, spdy.SynStream):
            await self._new_stream(frame)
        elif isinstance(frame, spdy.RstStream):
            stream = self.streams.pop(frame.stream_id, None)
            if stream is not None:
                stream._reset()
        elif isinstance(frame, spdy.Ping):
            if frame.id % 2 == 1:  # the client's: echo it
                await self._send_frame(frame)
        elif isinstance(frame, spdy.GoAway):
            log.debug("client sent GOAWAY (last stream %d)", frame.last_good_stream_id)
            self.closed = True
        elif isinstance(frame, spdy.Headers_):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and frame.flags & spdy.FLAG_FIN:
                stream._remote_fin()
                self._forget_if_done(stream)
        # SETTINGS, WINDOW_UPDATE, SYN_REPLY: nothing to do for a server without flow control

    async def _new_stream(self, frame: spdy.SynStream) -> None:
        if frame.stream_id % 2 == 0 or frame.stream_id <= self.last_stream_id:
            await self._send_frame(spdy.RstStream(frame.stream_id, spdy.PROTOCOL_ERROR))
            return
        self.last_stream_id = frame.stream_id
        stream = Stream(self, frame)
        refusal = self._accept(stream)
        if refusal is not None:
            log.info("stream %d refused: %s", stream.id, refusal)
            await self._send_frame(spdy.RstStream(stream.id, spdy.CANCEL))
            return
        self.streams[stream.id] = stream
        await self._send_frame(spdy.SynReply(stream.id, {}))
        self._on_stream(stream)

    async def goaway(self) -> None:
        if not self.closed:
            await self._send_frame(spdy.GoAway(self.last_stream_id, spdy.GOAWAY_OK))
        self.shutdown()

    def shutdown(self) -> None:
        """The transport is gone: every stream ends."""
        self.closed = True
        for stream in list(self.streams.values()):
            stream.local_closed = True
            stream.stop_reading()
            stream._remote_fin()
        self.streams.clear()
