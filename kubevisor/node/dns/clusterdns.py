"""The node agent's cluster DNS: informers on Services and Endpoints feeding
a :class:`~kubevisor.node.dns.server.DNSServer`.

:class:`ClusterDNS` is what :func:`kubevisor.node.agent.run_node` starts
as one of its tasks: it binds the server on the node's pod-bridge gateway
(port 53), runs two informers whose handlers keep a
:class:`~kubevisor.node.dns.catalog.Catalog` current (so Service changes
are answered at once, no restart), and marks the server ready once both
caches have synced. When the address cannot be bound it logs why and
tries again every ``retry_seconds``: pods still run, only without names.
Cancel the task to stop; the sockets are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Sequence

from kubevisor.client import Client, Informer
from kubevisor.node.dns.catalog import Catalog
from kubevisor.node.dns.errors import DNSServerError
from kubevisor.node.dns.records import Zone
from kubevisor.node.dns.resolvconf import DEFAULT_ZONE
from kubevisor.node.dns.server import DNSServer
from kubevisor.node.dns.upstream import Upstream, host_upstreams

log = logging.getLogger(__name__)


def gateway_address(pod_cidr: str) -> str:
    """The pod bridge's gateway: the first address of ``pod_cidr``; what a
    ClusterFirst pod's resolv.conf names as its nameserver."""
    return str(ipaddress.ip_network(pod_cidr, strict=False).network_address + 1)


class ClusterDNS:
    """One node's DNS server for the cluster zone."""

    def __init__(self, client: Client, *, address: str, port: int = 53,
                 zone: str = DEFAULT_ZONE, upstreams: Sequence[tuple[str, int]] | None = None,
                 ttl: int = 5, upstream_timeout: float = 5.0, retry_seconds: float = 10.0) -> None:
        self.catalog = Catalog()
        self.zone = Zone(self.catalog, zone=zone, ttl=ttl, server_ip=address)
        servers = list(host_upstreams() if upstreams is None else upstreams)
        # never forward to ourselves (a loop): the host may name this address
        servers = [s for s in servers if s != (address, port)]
        self.server = DNSServer(self.zone, Upstream(servers, timeout=upstream_timeout),
                                host=address, port=port)
        self.services = Informer(client, "v1", "Service")
        self.endpoints = Informer(client, "v1", "Endpoints")
        self.services.add_handler(self.catalog.handler("Service"))
        self.endpoints.add_handler(self.catalog.handler("Endpoints"))
        self._retry = retry_seconds
        #: Set once the server listens (``server.port`` is then the bound port).
        self.listening = asyncio.Event()

    @classmethod
    def for_pod_cidr(cls, client: Client, pod_cidr: str, **kwargs: object) -> ClusterDNS:
        """The server of a node whose pod bridge serves ``pod_cidr``: on its
        gateway, the first address (as the network driver assigns it)."""
        return cls(client, address=gateway_address(pod_cidr), **kwargs)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        while True:
            try:
                await self.server.start()
            except DNSServerError as exc:
                log.error("cluster DNS: %s; retrying in %.0fs", exc, self._retry)
                await asyncio.sleep(self._retry)
                continue
            self.listening.set()
            return

    async def _ready(self) -> None:
        await self.services.synced.wait()
        await self.endpoints.synced.wait()
        self.server.ready.set()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.services.run(), name="dns-services"),
                 asyncio.create_task(self.endpoints.run(), name="dns-endpoints"),
                 asyncio.create_task(self._ready(), name="dns-ready")]
        try:
            await self._listen()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.server.close()
