"""SPDY/3.1 frames: the wire format under ``kubectl port-forward``.

kubectl 1.32 tunnels a SPDY/3.1 connection through WebSocket binary
messages (subprotocol ``SPDY/3.1+portforward.k8s.io``); this module reads
and writes the frames of that byte stream, as the SPDY/3 draft defines
them (only what Kubernetes' streams use; no server push, no credential
frames):

- a control frame: ``1 | version(15) | type(16)``, ``flags(8) | length(24)``,
  then its body — SYN_STREAM (1), SYN_REPLY (2), RST_STREAM (3),
  SETTINGS (4), PING (6), GOAWAY (7), HEADERS (8), WINDOW_UPDATE (9);
- a data frame: ``0 | stream id(31)``, ``flags(8) | length(24)``, payload.
  Flags: FIN 0x01 on data and stream frames, UNIDIRECTIONAL 0x02 on SYN_STREAM.

Header blocks (``count``, then length-prefixed names and values, values
joined by NUL, 32-bit big-endian lengths) are zlib-compressed with the
SPDY/3 dictionary; each direction of a connection is *one* zlib stream,
flushed (Z_SYNC_FLUSH) at the end of every block, so a :class:`FrameReader`
and a :class:`FrameWriter` live as long as their connection.

Pure: bytes in, frames out, and back. Used by
:mod:`kubevisor.node.streams.spdyconn`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS = 1, 2, 3, 4
PING, GOAWAY, HEADERS, WINDOW_UPDATE = 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_LENGTH = (1 << 24) - 1
#: RST_STREAM status codes.
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL = 1, 2, 3, 4, 5
INTERNAL_ERROR, FLOW_CONTROL_ERROR, STREAM_IN_USE, STREAM_ALREADY_CLOSED = 6, 7, 8, 9
#: GOAWAY status codes.
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

Headers = dict[str, list[str]]


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary: common header names and
    values, each with a 32-bit length, then a run of status codes, reasons,
    dates and media types (section 2.6.10.1 of the draft)."""
    names = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status"
    ).split()
    words = [*names, "200 OK", *"version HTTP/1.1 url public set-cookie keep-alive origin".split()]
    codes = ("100101201202205206300302303304305306307402405406407408409410411412413414415416"
             "417502504505")
    reasons = ("203 Non-Authoritative Information", "204 No Content", "301 Moved Permanently",
               "400 Bad Request", "401 Unauthorized", "403 Forbidden", "404 Not Found",
               "500 Internal Server Error", "501 Not Implemented", "503 Service Unavailable")
    rest = ("Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
            "application/xhtml+xml,text/plain,text/javascript,public"
            "privatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    out = bytearray()
    for word in words:
        out += struct.pack(">I", len(word)) + word.encode()
    out += (codes + "".join(reasons) + rest).encode()
    return bytes(out)


DICTIONARY = _dictionary()


class SpdyError(Exception):
    """A malformed frame or header block: the connection cannot go on."""


# ------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    slot: int = 0
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    @property
    def unidirectional(self) -> bool:
        return bool(self.flags & FLAG_UNIDIRECTIONAL)


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Headers_:
    """A HEADERS frame (trailing name avoids clashing with the alias)."""

    stream_id: int
    headers: Headers
    flags: int = 0


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    #: (flags, id, value) triples.
    entries: Sequence[tuple[int, int, int]] = field(default_factory=tuple)
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = (DataFrame | SynStream | SynReply | Headers_ | RstStream | Settings | Ping | GoAway
         | WindowUpdate)


# ------------------------------------------------------------ header blocks


def encode_header_block(headers: Mapping[str, Sequence[str]]) -> bytes:
    """The uncompressed block; names are lower-cased, values joined by NUL."""
    out = bytearray(struct.pack(">I", len(headers)))
    for name, values in headers.items():
        key = name.lower().encode()
        value = "\0".join(values).encode()
        out += struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value
    return bytes(out)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        offset = 4
        headers: Headers = {}
        for _ in range(count):
            (size,) = struct.unpack_from(">I", block, offset)
            name = block[offset + 4:offset + 4 + size]
            offset += 4 + size
            (size,) = struct.unpack_from(">I", block, offset)
            value = block[offset + 4:offset + 4 + size]
            offset += 4 + size
            if offset > len(block):
                raise SpdyError("header block is truncated")
            key = name.decode("latin-1").lower()
            if key in headers:
                raise SpdyError(f"header {key!r} appears twice")
            headers[key] = value.decode("latin-1").split("\0")
    except struct.error as exc:
        raise SpdyError("header block is truncated") from exc
    if offset != len(block):
        raise SpdyError("header block has trailing bytes")
    return headers


# ------------------------------------------------------------------ reading


class FrameReader:
    """Frames from a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            (word, flags_length) = struct.unpack_from(">II", self._buffer, 0)
            length = flags_length & MAX_LENGTH
            if len(self._buffer) < 8 + length:
                break
            body = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            frame = self._frame(word, flags_length >> 24, body)
            if frame is not None:
                frames.append(frame)
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise SpdyError(f"header block does not decompress: {exc}") from exc
        return decode_header_block(raw)

    def _frame(self, word: int, flags: int, body: bytes) -> Frame | None:
        if not word & 0x80000000:
            stream_id = word & 0x7FFFFFFF
            if stream_id == 0:
                raise SpdyError("data frame for stream 0")
            return DataFrame(stream_id, body, flags)
        version = (word >> 16) & 0x7FFF
        kind = word & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        try:
            return self._control(kind, flags, body)
        except struct.error as exc:
            raise SpdyError(f"control frame {kind} is too short") from exc

    def _control(self, kind: int, flags: int, body: bytes) -> Frame | None:
        if kind == SYN_STREAM:
            stream_id, associated, priority, slot = struct.unpack_from(">IIBB", body, 0)
            return SynStream(stream_id & 0x7FFFFFFF, self._headers(body[10:]),
                             associated & 0x7FFFFFFF, priority >> 5, slot, flags)
        if kind == SYN_REPLY:
            (stream_id,) = struct.unpack_from(">I", body, 0)
            return SynReply(stream_id & 0x7FFFFFFF, self._headers(body[4:]), flags)
        if kind == HEADERS:
            (stream_id,) = struct.unpack_from(">I", body, 0)
            return Headers_(stream_id & 0x7FFFFFFF, self._headers(body[4:]), flags)
        if kind == RST_STREAM:
            stream_id, status = struct.unpack_from(">II", body, 0)
            return RstStream(stream_id & 0x7FFFFFFF, status)
        if kind == SETTINGS:
            (count,) = struct.unpack_from(">I", body, 0)
            entries = []
            for i in range(count):
                flag_id, value = struct.unpack_from(">II", body, 4 + 8 * i)
                entries.append((flag_id >> 24, flag_id & 0xFFFFFF, value))
            return Settings(tuple(entries), flags)
        if kind == PING:
            return Ping(struct.unpack_from(">I", body, 0)[0])
        if kind == GOAWAY:
            last, status = struct.unpack_from(">II", body, 0)
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == WINDOW_UPDATE:
            stream_id, delta = struct.unpack_from(">II", body, 0)
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return None  # unknown control frames are ignored, as the draft says


# ------------------------------------------------------------------ writing


def _control(kind: int, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_LENGTH:
        raise SpdyError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body


class FrameWriter:
    """Frames to bytes; holds this direction's header compressor."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         zdict=DICTIONARY)

    def _block(self, headers: Mapping[str, Sequence[str]]) -> bytes:
        raw = encode_header_block(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def write(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) > MAX_LENGTH:
                raise SpdyError("data frame too large")
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF,
                               (frame.flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            body = struct.pack(">IIBB", frame.stream_id, frame.associated_id,
                               (frame.priority & 7) << 5, frame.slot) + self._block(frame.headers)
            return _control(SYN_STREAM, frame.flags, body)
        if isinstance(frame, SynReply):
            return _control(SYN_REPLY, frame.flags,
                            struct.pack(">I", frame.stream_id) + self._block(frame.headers))
        if isinstance(frame, Headers_):
            return _control(HEADERS, frame.flags,
                            struct.pack(">I", frame.stream_id) + self._block(frame.headers))
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flag << 24) | ident, value) for flag, ident, value in frame.entries)
            return _control(SETTINGS, frame.flags, body)
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")
