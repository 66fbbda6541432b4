"""The node agent's kube-proxy: Services and Endpoints become the host's
service rules.

Informers on every Service and Endpoints object feed a pure translation,
:func:`service_rules`, into :class:`~kubevisor.runtime.types.ServiceRule`
records (cluster IP, port, protocol, the ready endpoints of the matching
port name, node port, LoadBalancer ingress and external IPs); the shell,
:class:`ServiceProxyController`, hands the whole set to the runtime's
:class:`~kubevisor.runtime.types.ServiceProxy` after a short debounce and
only when it changed, so a burst of endpoint changes costs one rules
replacement. Started by :func:`kubevisor.node.agent.run_node` when the
host has a proxy driver. :meth:`ServiceProxyController.wait_unrouted` lets
the pod workers hold a deleted pod's SIGTERM until this node's rules no
longer send new connections to it (the Endpoints controller drops a
terminating pod at once, but the change takes a few tens of milliseconds
to reach the rules; a server that exits on SIGTERM meanwhile refuses
connections the proxy still routes to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubevisor.client import Client, Informer
from kubevisor.runtime.types import ServiceBackend, ServiceProxy, ServiceRule

JSON = dict[str, Any]
log = logging.getLogger(__name__)
_PROTOCOLS = ("TCP", "UDP")


def _endpoint_backends(endpoints: JSON | None, port_name: str, protocol: str) -> list[ServiceBackend]:
    """Ready addresses of ``endpoints`` for the port named ``port_name``
    (the Endpoints controller names ports after the Service's ports)."""
    backends: list[ServiceBackend] = []
    seen: set[tuple[str, int]] = set()
    for subset in (endpoints or {}).get("subsets") or []:
        ports = [p for p in subset.get("ports") or []
                 if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol]
        for port in ports:
            number = port.get("port")
            if not isinstance(number, int):
                continue
            for address in subset.get("addresses") or []:
                ip = address.get("ip")
                if ip and (ip, number) not in seen:
                    seen.add((ip, number))
                    backends.append(ServiceBackend(ip=ip, port=number))
    backends.sort(key=lambda b: (b.ip, b.port))
    return backends


def service_rules(services: Iterable[JSON],
                  endpoints: Mapping[tuple[str, str], JSON]) -> list[ServiceRule]:
    """Every port of every Service that has a cluster IP, as the proxy
    programs it. Headless services (clusterIP None) and ExternalName ones
    get no rule, as with kube-proxy."""
    rules: list[ServiceRule] = []
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        cluster_ip = spec.get("clusterIP") or ""
        if not cluster_ip or cluster_ip == "None" or spec.get("type") == "ExternalName":
            continue
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        ingress = [i.get("ip") for i in
                   ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                   if isinstance(i, dict) and i.get("ip")]
        external = sorted({*ingress, *(spec.get("externalIPs") or [])})
        node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
        for port in spec.get("ports") or []:
            protocol = port.get("protocol") or "TCP"
            number = port.get("port")
            if protocol not in _PROTOCOLS or not isinstance(number, int):
                continue
            port_name = port.get("name") or ""
            rules.append(ServiceRule(
                name=f"{namespace}/{name}:{port_name or number}",
                protocol=protocol,
                cluster_ip=cluster_ip,
                port=number,
                backends=tuple(_endpoint_backends(endpoints.get((namespace, name)),
                                                  port_name, protocol)),
                node_port=port.get("nodePort") if node_ports and port.get("nodePort") else None,
                external_ips=tuple(external),
            ))
    rules.sort(key=lambda r: r.name)
    return rules


class ServiceProxyController:
    """Keeps ``proxy`` in line with the API's Services and Endpoints."""

    def __init__(self, client: Client, proxy: ServiceProxy, *, debounce_seconds: float = 0.05) -> None:
        self._proxy = proxy
        self._debounce = debounce_seconds
        self.services = Informer(client, "v1", "Service")
        self.endpoints = Informer(client, "v1", "Endpoints")
        self._dirty = asyncio.Event()
        self._applied: list[ServiceRule] | None = None
        self._routed: frozenset[str] = frozenset()  # backend IPs in the applied rules
        self._synced = asyncio.Event()  # set (and replaced) after each rules replacement
        #: Number of rule replacements made (for tests and logs).
        self.syncs = 0
        for informer in (self.services, self.endpoints):
            informer.add_handler(lambda *_: self._dirty.set())

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.services.run(), name="proxy-services"),
                 asyncio.create_task(self.endpoints.run(), name="proxy-endpoints")]
        try:
            await self.services.synced.wait()
            await self.endpoints.synced.wait()
            self._dirty.set()
            while True:
                await self._dirty.wait()
                await asyncio.sleep(self._debounce)
                self._dirty.clear()
                await self.sync_once()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def sync_once(self) -> None:
        """Compute the rules from the caches and apply them if they changed;
        a failure is logged and retried on the next change or in 5 s."""
        by_key = {((e.get("metadata") or {}).get("namespace") or "",
                   (e.get("metadata") or {}).get("name") or ""): e for e in self.endpoints.items()}
        rules = service_rules(self.services.items(), by_key)
        if rules == self._applied:
            return
        try:
            await self._proxy.sync(rules)
        except Exception:
            log.exception("service proxy sync failed; retrying")
            asyncio.get_running_loop().call_later(5.0, self._dirty.set)
            return
        self._applied = rules
        self._routed = frozenset(b.ip for r in rules for b in r.backends)
        self.syncs += 1
        synced, self._synced = self._synced, asyncio.Event()
        synced.set()

    def routes_to(self, ip: str) -> bool:
        """Whether the rules in the kernel send service traffic to ``ip``."""
        return ip in self._routed

    async def wait_unrouted(self, ip: str, timeout: float) -> bool:
        """Return once no rule in the kernel sends service traffic to ``ip``
        (True), or after ``timeout`` seconds (False: still routed)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.routes_to(ip):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._synced.wait()
        return True
