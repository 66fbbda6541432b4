"""SPDY/3.1 frames: every frame type round-trips, header blocks compress
with the SPDY/3 dictionary on one zlib stream per direction, byte streams
split anywhere still parse, and malformed input is refused; then the
server-side connection (replies, pings, FIN, resets) over a loopback pair."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib

import pytest

from kubevisor.node.streams import spdy
from kubevisor.node.streams.spdyconn import Connection, Stream

FRAMES: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]},
                   associated_id=0, priority=3, flags=spdy.FLAG_FIN),
    spdy.SynStream(3, {"streamtype": ["data"], "multi": ["a", "b"]}, flags=spdy.FLAG_UNIDIRECTIONAL),
    spdy.SynReply(3, {}),
    spdy.SynReply(5, {"status": ["200 OK"], "version": ["HTTP/1.1"]}, flags=spdy.FLAG_FIN),
    spdy.Headers_(7, {"x": [""]}),
    spdy.DataFrame(3, b"hello", 0),
    spdy.DataFrame(3, b"", spdy.FLAG_FIN),
    spdy.DataFrame(0x7FFFFFFF, bytes(range(256)) * 100),
    spdy.RstStream(3, spdy.CANCEL),
    spdy.Settings(((0, 4, 100), (1, 7, 65536))),
    spdy.Ping(1),
    spdy.Ping(0xFFFFFFFF),
    spdy.GoAway(9, spdy.GOAWAY_PROTOCOL_ERROR),
    spdy.WindowUpdate(3, 1 << 20),
]


def test_dictionary_is_the_spdy3_one() -> None:
    # Length and digest of the draft's 1,423-byte dictionary.
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == (
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02")
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"utf-,*,enq=0.")


def test_every_frame_round_trips_on_one_compression_stream() -> None:
    writer, reader = spdy.FrameWriter(), spdy.FrameReader()
    wire = b"".join(writer.write(f) for f in FRAMES)
    assert reader.feed(wire) == FRAMES


def test_frames_survive_any_split_of_the_byte_stream() -> None:
    writer = spdy.FrameWriter()
    wire = b"".join(writer.write(f) for f in FRAMES * 3)
    for size in (1, 2, 7, 13, 1000):
        reader = spdy.FrameReader()
        got: list[spdy.Frame] = []
        for start in range(0, len(wire), size):
            got += reader.feed(wire[start:start + size])
        assert got == FRAMES * 3


def test_wire_layout_of_control_and_data_frames() -> None:
    writer = spdy.FrameWriter()
    assert writer.write(spdy.Ping(7)) == bytes.fromhex("80030006 00000004 00000007")
    assert writer.write(spdy.RstStream(5, spdy.CANCEL)) == bytes.fromhex(
        "80030003 00000008 00000005 00000005")
    assert writer.write(spdy.DataFrame(3, b"ab", spdy.FLAG_FIN)) == bytes.fromhex(
        "00000003 01000002 6162")
    assert writer.write(spdy.GoAway(1)) == bytes.fromhex("80030007 00000008 00000001 00000000")
    syn = writer.write(spdy.SynReply(1, {}))
    assert syn[:4] == bytes.fromhex("80030002")
    assert struct.unpack(">I", syn[4:8])[0] == len(syn) - 8


def test_header_blocks_use_the_dictionary_and_sync_flush() -> None:
    writer = spdy.FrameWriter()
    frame = writer.write(spdy.SynStream(1, {"Port": ["80"], "streamType": ["data"]}))
    block = frame[18:]
    # A zlib header announcing a preset dictionary (FDICT) with its Adler-32.
    assert block[1] & 0x20
    assert struct.unpack(">I", block[2:6])[0] == zlib.adler32(spdy.DICTIONARY)
    assert block.endswith(b"\x00\x00\xff\xff")  # Z_SYNC_FLUSH marker
    inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
    raw = inflate.decompress(block)
    assert spdy.decode_header_block(raw) == {"port": ["80"], "streamtype": ["data"]}
    # A second block on the same stream is not decodable alone (shared context).
    second = writer.write(spdy.SynStream(3, {"port": ["80"], "streamtype": ["data"]}))[18:]
    assert not second.startswith(block[:2])
    assert spdy.decode_header_block(inflate.decompress(second))["port"] == ["80"]


def test_a_block_compressed_elsewhere_decodes() -> None:
    """What another implementation's compressor (level 6, same dictionary)
    produces decodes the same."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=spdy.DICTIONARY)
    raw = spdy.encode_header_block({"streamtype": ["error"], "port": ["5000"], "requestid": ["2"]})
    block = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = struct.pack(">IIBB", 1, 0, 0, 0) + block
    wire = struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body
    (frame,) = spdy.FrameReader().feed(wire)
    assert isinstance(frame, spdy.SynStream) and frame.headers["port"] == ["5000"]


def test_malformed_input_is_refused() -> None:
    with pytest.raises(spdy.SpdyError, match="version"):
        spdy.FrameReader().feed(struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1")
    with pytest.raises(spdy.SpdyError, match="stream 0"):
        spdy.FrameReader().feed(struct.pack(">II", 0, 1) + b"x")
    with pytest.raises(spdy.SpdyError, match="decompress"):
        body = struct.pack(">IIBB", 1, 0, 0, 0) + b"garbage!"
        spdy.FrameReader().feed(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(body)) + body)
    with pytest.raises(spdy.SpdyError, match="too short"):
        spdy.FrameReader().feed(struct.pack(">HHI", 0x8003, spdy.RST_STREAM, 2) + b"\0\0")
    with pytest.raises(spdy.SpdyError, match="truncated"):
        spdy.decode_header_block(struct.pack(">II", 1, 10) + b"abc")
    with pytest.raises(spdy.SpdyError, match="twice"):
        spdy.decode_header_block(spdy.encode_header_block({"a": ["1"]})[:4].replace(b"\1", b"\2")
                                 + spdy.encode_header_block({"a": ["1"]})[4:] * 2)
    # Unknown control frames (CREDENTIAL, 10) are skipped.
    assert spdy.FrameReader().feed(struct.pack(">HHI", 0x8003, 10, 2) + b"zz") == []


class _Peer:
    """The client end: writes frames into a Connection, reads its output."""

    def __init__(self, accept: object = None) -> None:
        self.writer = spdy.FrameWriter()
        self.reader = spdy.FrameReader()
        self.out: list[spdy.Frame] = []
        self.streams: list[Stream] = []

        async def send(data: bytes) -> bool:
            self.out += self.reader.feed(data)
            return True

        self.conn = Connection(send, accept=accept or (lambda s: None), on_stream=self.streams.append)

    async def send(self, frame: spdy.Frame) -> None:
        await self.conn.receive(self.writer.write(frame))


async def test_connection_replies_echoes_and_carries_data() -> None:
    peer = _Peer()
    await peer.send(spdy.SynStream(1, {"streamtype": ["data"]}))
    assert peer.out == [spdy.SynReply(1, {})]
    (stream,) = peer.streams
    assert stream.header("streamType") == "data"
    await peer.send(spdy.DataFrame(1, b"ping?"))
    assert await stream.read() == b"ping?"
    assert await stream.write(b"x" * 70000)
    data = [f for f in peer.out if isinstance(f, spdy.DataFrame)]
    assert b"".join(f.data for f in data) == b"x" * 70000 and len(data) == 3
    await peer.send(spdy.Ping(5))
    await peer.send(spdy.Ping(6))  # one of ours: not echoed
    assert [f for f in peer.out if isinstance(f, spdy.Ping)] == [spdy.Ping(5)]
    await peer.send(spdy.DataFrame(1, b"", spdy.FLAG_FIN))
    assert await stream.read() == b"" and await stream.read() == b""
    await stream.close()
    assert peer.out[-1] == spdy.DataFrame(1, b"", spdy.FLAG_FIN)
    assert peer.conn.streams == {}


async def test_connection_resets_refused_and_out_of_order_streams() -> None:
    peer = _Peer(accept=lambda s: None if s.header("port") else "port required")
    await peer.send(spdy.SynStream(3, {}))
    assert peer.out == [spdy.RstStream(3, spdy.CANCEL)] and peer.streams == []
    await peer.send(spdy.SynStream(1, {"port": ["1"]}))  # ids must grow
    await peer.send(spdy.SynStream(4, {"port": ["1"]}))  # and be odd
    assert peer.out[1:] == [spdy.RstStream(1, spdy.PROTOCOL_ERROR),
                            spdy.RstStream(4, spdy.PROTOCOL_ERROR)]


async def test_peer_reset_ends_reads_and_writes() -> None:
    peer = _Peer()
    await peer.send(spdy.SynStream(1, {}))
    (stream,) = peer.streams
    reading = asyncio.create_task(stream.read())
    await asyncio.sleep(0)
    await peer.send(spdy.RstStream(1, spdy.CANCEL))
    assert await asyncio.wait_for(reading, 1) == b""
    assert stream.reset_by_peer and not await stream.write(b"late")
    await peer.send(spdy.DataFrame(1, b"ignored"))  # for a gone stream: dropped
    await peer.send(spdy.GoAway(1))
    assert peer.conn.closed


async def test_a_full_stream_buffer_holds_the_reader() -> None:
    peer = _Peer()
    await peer.send(spdy.SynStream(1, {}))
    (stream,) = peer.streams
    for i in range(64):
        await peer.send(spdy.DataFrame(1, bytes([i])))
    blocked = asyncio.create_task(peer.send(spdy.DataFrame(1, b"more")))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert await stream.read() == b"\x00"
    await asyncio.wait_for(blocked, 1)
    stream.stop_reading()  # a stream nobody reads any more never blocks
    for _ in range(100):
        await peer.send(spdy.DataFrame(1, b"dropped"))
