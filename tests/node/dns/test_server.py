"""The server's message handling without sockets (:meth:`DNSServer.respond`):
flags, SERVFAIL before the caches sync, malformed queries, opcodes, and
classes; and the two sockets sharing one port."""

from __future__ import annotations

import socket
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from kubevisor.node.dns import Catalog, DNSServer, DNSServerError, Upstream, Zone
from tests.node.dns.objects import service


def _server() -> DNSServer:
    zone = Zone(Catalog([service("web")]), server_ip="127.0.0.1")
    return DNSServer(zone, Upstream([]), host="127.0.0.1", port=0)


async def _ask(server: DNSServer, query: dns.message.Message) -> dns.message.Message:
    wire = await server.respond(query.to_wire(), tcp=False)
    assert wire is not None
    return dns.message.from_wire(wire)


async def test_flags_and_sync_gate() -> None:
    server = _server()
    query = dns.message.make_query("web.default.svc.cluster.local.", "A")
    early = await _ask(server, query)
    assert early.rcode() == dns.rcode.SERVFAIL and not early.answer  # never a false NXDOMAIN
    server.ready.set()
    reply = await _ask(server, query)
    assert reply.id == query.id and reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.AA
    assert reply.flags & dns.flags.RA and reply.flags & dns.flags.RD
    assert [str(rd) for rd in reply.answer[0]] == ["10.96.0.10"]
    # outside the zone with no upstream: SERVFAIL, not authoritative
    outside = await _ask(server, dns.message.make_query("example.org.", "A"))
    assert outside.rcode() == dns.rcode.SERVFAIL and not outside.flags & dns.flags.AA


async def test_malformed_and_unsupported() -> None:
    server = _server()
    server.ready.set()
    assert await server.respond(b"\x12\x34\x01", tcp=False) is None  # not even a header
    garbage = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x05abc"
    wire = await server.respond(garbage, tcp=False)
    assert wire is not None
    qid, flags = struct.unpack("!HH", wire[:4])
    assert qid == 0xBEEF and flags & dns.flags.QR and flags & 0xF == dns.rcode.FORMERR
    notify = dns.message.make_query("cluster.local.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert (await _ask(server, notify)).rcode() == dns.rcode.NOTIMP
    chaos = dns.message.make_query("web.default.svc.cluster.local.", "TXT", rdclass="CH")
    assert (await _ask(server, chaos)).rcode() == dns.rcode.NOTIMP
    response = dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local.", "A"))
    assert await server.respond(response.to_wire(), tcp=False) is None  # never answer answers


async def test_binds_udp_and_tcp_on_one_port_and_reports_a_taken_one() -> None:
    server = _server()
    await server.start()
    try:
        assert server.port > 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe, pytest.raises(OSError):
            probe.bind(("127.0.0.1", server.port))
        other = DNSServer(server.zone, Upstream([]), host="127.0.0.1", port=server.port)
        with pytest.raises(DNSServerError, match=f"127.0.0.1:{server.port}/udp"):
            await other.start()
    finally:
        await server.close()


async def test_tcp_answers_several_queries_and_close_ends_open_connections(
        caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    server = _server()
    server.ready.set()
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for name in ("web.default.svc.cluster.local.", "nope.default.svc.cluster.local."):
            wire = dns.message.make_query(name, "A").to_wire()
            writer.write(struct.pack("!H", len(wire)) + wire)
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = dns.message.from_wire(await reader.readexactly(size))
            assert str(reply.question[0].name) == name
    finally:
        await server.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
    writer.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
