"""Forwarding questions outside the cluster zone to the host's resolvers.

An :class:`Upstream` asks its servers in order (UDP, or TCP when the
client came over TCP; a truncated UDP answer is passed on as is, and the
client retries over TCP), each within what is left of one overall
timeout, and returns the first answer or None when every server failed or
time ran out (the caller answers SERVFAIL). :func:`host_upstreams` reads
the servers from the host's resolv.conf: the DNS server runs in the host's
network namespace, so the host's own loopback stubs are reachable.
Used by :class:`kubevisor.node.dns.server.DNSServer`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message

from kubevisor.node.dns.resolvconf import read_host_resolv

log = logging.getLogger(__name__)


def parse_upstream(text: str, *, default_port: int = 53) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1`` or ``[::1]:5353`` → (address, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def host_upstreams(path: str | Path = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The host's nameservers (zone index dropped, invalid lines skipped)."""
    out = []
    for server in read_host_resolv(path).nameservers:
        address = server.split("%", 1)[0]
        try:
            ipaddress.ip_address(address)
        except ValueError:
            continue
        out.append((address, 53))
    return out


class Upstream:
    """Ask ``servers`` in turn within ``timeout`` seconds in all."""

    def __init__(self, servers: Sequence[tuple[str, int]], *, timeout: float = 5.0,
                 attempt_timeout: float = 2.0) -> None:
        self.servers = list(servers)
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout

    async def ask(self, query: dns.message.Message, *, tcp: bool = False) -> dns.message.Message | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        for host, port in self.servers:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                if tcp:
                    return await dns.asyncquery.tcp(query, host, port=port,
                                                    timeout=min(left, self.attempt_timeout))
                return await dns.asyncquery.udp(query, host, port=port,
                                                timeout=min(left, self.attempt_timeout),
                                                ignore_unexpected=True, raise_on_truncation=False)
            except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
                log.debug("upstream %s:%d failed for %s: %s", host, port, query.question, exc)
        return None
