"""The DNS server: UDP and TCP on one address and port, asyncio.

:meth:`DNSServer.respond` turns one query's bytes into the reply's: the
question goes to :class:`~kubevisor.node.dns.records.Zone` (authoritative,
AA set) or, outside the zone, whole to the
:class:`~kubevisor.node.dns.upstream.Upstream` (SERVFAIL when it fails);
an ExternalName's CNAME to an outside name is followed upstream and the
records added. Until ``ready`` is set (the caches are synced) in-zone
questions get SERVFAIL, so that no client caches a false NXDOMAIN.
Replies over UDP fit the client's EDNS size (512 bytes without EDNS),
else go out truncated (TC) for the client to retry over TCP.
:meth:`DNSServer.start` binds both sockets with ``IP_FREEBIND`` (the
bridge's gateway address may appear a moment later) and raises
:class:`~kubevisor.node.dns.errors.DNSServerError` when it cannot.
Run by :class:`kubevisor.node.dns.service.ClusterDNS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass

from kubevisor.node.dns.errors import DNSServerError
from kubevisor.node.dns.records import Zone
from kubevisor.node.dns.upstream import Upstream

log = logging.getLogger(__name__)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
#: The EDNS payload this server offers (the DNS flag day's safe size).
OUR_PAYLOAD = 1232
TCP_IDLE_SECONDS = 10.0


def _header_only(wire: bytes, rcode: int) -> bytes | None:
    """A bare reply to a query too broken to parse (None: not even a header)."""
    if len(wire) < 12:
        return None
    (qid, flags) = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None  # never answer a response
    flags = dns.flags.QR | (flags & (dns.flags.RD | (0xF << 11))) | dns.flags.RA | rcode
    return struct.pack("!HHHHHH", qid, flags, 0, 0, 0, 0)


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server._spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: Any) -> None:
        reply = await self.server.respond(data, tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns udp: %s", exc)


class DNSServer:
    """Serves ``zone`` on ``host``:``port`` (0: a free port, the same for both)."""

    def __init__(self, zone: Zone, upstream: Upstream, *, host: str, port: int = 53) -> None:
        self.zone = zone
        self.upstream = upstream
        self.host = host
        self.port = port
        #: Set when the catalog is synced; before, in-zone questions get SERVFAIL.
        self.ready = asyncio.Event()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    # ------------------------------------------------------------ answering

    async def respond(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The reply to one query (None: drop it)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.message.ShortHeader:
            return None
        except dns.exception.DNSException:
            return _header_only(wire, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None
        limit = 65535 if tcp else max(512, min(query.payload, 65535) if query.edns >= 0 else 512)
        reply = dns.message.make_response(query, recursion_available=True,
                                          our_payload=OUR_PAYLOAD)
        if query.opcode() != dns.opcode.QUERY:
            reply.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            reply.set_rcode(dns.rcode.FORMERR)
        else:
            try:
                forwarded = await self._answer(query, reply, tcp=tcp)
            except Exception:  # a bug must cost one answer, never the server
                log.exception("cluster DNS: failed to answer %s", query.question)
                reply = dns.message.make_response(query, recursion_available=True,
                                                  our_payload=OUR_PAYLOAD)
                reply.set_rcode(dns.rcode.SERVFAIL)
                forwarded = None
            if forwarded is not None:
                reply = forwarded
        return reply.to_wire(max_size=limit, prefer_truncation=True)

    async def _answer(self, query: dns.message.Message, reply: dns.message.Message, *,
                      tcp: bool) -> dns.message.Message | None:
        """Fill ``reply``, or return the upstream's reply to send instead."""
        question = query.question[0]
        in_zone = self.zone.in_zone(question.name)
        if question.rdclass != dns.rdataclass.IN:
            if in_zone:
                reply.set_rcode(dns.rcode.NOTIMP)
                return None
            return await self._forward(query, reply, tcp=tcp)
        if in_zone and not self.ready.is_set():
            reply.set_rcode(dns.rcode.SERVFAIL)
            return None
        found = self.zone.lookup(question.name, question.rdtype)
        if found.forward:
            return await self._forward(query, reply, tcp=tcp)
        reply.set_rcode(found.rcode)
        if found.authoritative:
            reply.flags |= dns.flags.AA
        reply.answer.extend(found.answer)
        reply.authority.extend(found.authority)
        reply.additional.extend(found.additional)
        if found.chase is not None and query.flags & dns.flags.RD:
            await self._chase(reply, found.chase, question.rdtype, tcp=tcp)
        return None

    async def _forward(self, query: dns.message.Message, reply: dns.message.Message, *,
                       tcp: bool) -> dns.message.Message | None:
        answer = await self.upstream.ask(query, tcp=tcp)
        if answer is None:
            reply.set_rcode(dns.rcode.SERVFAIL)
            return None
        return answer

    async def _chase(self, reply: dns.message.Message, target: Any, rdtype: Any, *,
                     tcp: bool) -> None:
        """Add the upstream's records for an ExternalName's target."""
        answer = await self.upstream.ask(dns.message.make_query(target, rdtype), tcp=tcp)
        if answer is None:
            return
        reply.answer.extend(answer.answer)
        if answer.rcode() == dns.rcode.NXDOMAIN:
            reply.set_rcode(dns.rcode.NXDOMAIN)

    # ------------------------------------------------------------ sockets

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _socket(kind: socket.SocketKind, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, kind)
        try:
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        """Bind UDP then TCP on the same port."""
        loop = asyncio.get_running_loop()
        for attempt in range(8 if self.port == 0 else 1):
            try:
                udp = self._socket(socket.SOCK_DGRAM, self.host, self.port)
            except OSError as exc:
                raise DNSServerError(f"cannot listen on {self.host}:{self.port}/udp: {exc}") from exc
            port = udp.getsockname()[1]
            try:
                tcp = self._socket(socket.SOCK_STREAM, self.host, port)
                break
            except OSError as exc:
                udp.close()
                if attempt == 7 or self.port != 0:
                    raise DNSServerError(f"cannot listen on {self.host}:{port}/tcp: {exc}") from exc
        transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp)
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        self.port = port
        log.info("cluster DNS serving %s on %s:%d", self.zone.origin, self.host, port)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
            task.add_done_callback(self._connections.pop)
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                wire = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]),
                                              TCP_IDLE_SECONDS)
                reply = await self.respond(wire, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # only close() cancels a handler; ending quietly keeps asyncio's
            # stream callback from logging the cancellation as an error
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        for writer in list(self._connections.values()):  # wakes their reads: EOF
            writer.transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1.0)
        pending = [*self._connections, *self._tasks]
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
