"""A tiny upstream DNS server on 127.0.0.1 for the forwarding tests: UDP and
TCP on one free port, fixed A records, NXDOMAIN for the rest, and a log of
the questions it saw. Built on dnspython directly, not on the server under
test. Never any real upstream in tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@dataclass
class StubUpstream:
    records: dict[str, str]
    port: int = 0
    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def reply(self, wire: bytes, transport: str) -> bytes:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = str(question.name).lower()
        self.seen.append((transport, name, dns.rdatatype.to_text(question.rdtype)))
        reply = dns.message.make_response(query, recursion_available=True)
        ip = self.records.get(name)
        if ip is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", ip))
        return reply.to_wire()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, stub: StubUpstream) -> None:
        self.stub = stub

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(self.stub.reply(data, "udp"), addr)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def stub_upstream(records: dict[str, str]) -> AsyncIterator[StubUpstream]:
    stub = StubUpstream(records)
    loop = asyncio.get_running_loop()
    for _ in range(10):  # a free UDP port whose TCP twin is free too
        udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_sock.bind(("127.0.0.1", 0))
        stub.port = udp_sock.getsockname()[1]
        tcp_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp_sock.bind(("127.0.0.1", stub.port))
            break
        except OSError:
            udp_sock.close()
            tcp_sock.close()
    else:
        raise AssertionError("no free port pair for the stub upstream")
    transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(stub), sock=udp_sock)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                out = stub.reply(await reader.readexactly(size), "tcp")
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(serve, sock=tcp_sock)
    try:
        yield stub
    finally:
        transport.close()
        tcp.close()
