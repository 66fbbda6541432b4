"""The cluster's Services and Endpoints as the DNS server reads them.

A :class:`Catalog` holds the current Service and Endpoints objects by
(namespace, name), fed by informer handlers (:meth:`Catalog.handler`) or
built directly from lists in tests, and answers the few questions
:mod:`kubevisor.node.dns.records` asks: a service, its ready endpoint
addresses (with their DNS hostnames), whether a namespace has services,
and which names own an IP (for PTR, an index rebuilt lazily after a
change). ``serial`` moves on every change; it is the zone's SOA serial.
Objects are shared with the informer caches and never mutated.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    """One ready address of a service; ``hostname`` is its DNS label: the
    pod's hostname when the Endpoints controller set one (StatefulSet pods),
    else the IP with dashes (CoreDNS's default)."""

    ip: str
    hostname: str
    #: (port name, protocol, number) of the subset the address belongs to.
    ports: tuple[tuple[str, str, int], ...]


def dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _key(obj: JSON) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def is_headless(svc: JSON) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def cluster_ips(svc: JSON) -> list[str]:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    ips = [ip for ip in spec.get("clusterIPs") or [] if ip and ip != "None"]
    first = spec.get("clusterIP")
    if not ips and first and first != "None":
        ips = [first]
    return ips


class Catalog:
    """Services and Endpoints by key, kept current by :meth:`handler`."""

    def __init__(self, services: Iterable[JSON] = (), endpoints: Iterable[JSON] = (), *,
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.services: dict[Key, JSON] = {_key(s): s for s in services}
        self.endpoints: dict[Key, JSON] = {_key(e): e for e in endpoints}
        self._per_namespace = Counter(ns for ns, _ in self.services)
        self._reverse: dict[str, list[tuple[str, str, str | None]]] | None = None
        self.serial = int(clock())

    # ------------------------------------------------------------ changes

    def _changed(self) -> None:
        self._reverse = None
        self.serial = max(self.serial + 1, int(self._clock()))

    def put_service(self, svc: JSON) -> None:
        key = _key(svc)
        if key not in self.services:
            self._per_namespace[key[0]] += 1
        self.services[key] = svc
        self._changed()

    def delete_service(self, svc: JSON) -> None:
        key = _key(svc)
        if self.services.pop(key, None) is not None:
            self._per_namespace[key[0]] -= 1
            if self._per_namespace[key[0]] <= 0:
                del self._per_namespace[key[0]]
        self._changed()

    def put_endpoints(self, ep: JSON) -> None:
        self.endpoints[_key(ep)] = ep
        self._changed()

    def delete_endpoints(self, ep: JSON) -> None:
        self.endpoints.pop(_key(ep), None)
        self._changed()

    def handler(self, kind: str) -> Callable[[str, JSON, JSON | None], None]:
        """An informer handler for ``kind`` ("Service" or "Endpoints")."""
        put, delete = ((self.put_service, self.delete_service) if kind == "Service"
                       else (self.put_endpoints, self.delete_endpoints))

        def handle(etype: str, obj: JSON, _old: JSON | None) -> None:
            (delete if etype == "DELETED" else put)(obj)
        return handle

    # ------------------------------------------------------------ reads

    def service(self, namespace: str, name: str) -> JSON | None:
        return self.services.get((namespace, name))

    def has_namespace(self, namespace: str) -> bool:
        return self._per_namespace.get(namespace, 0) > 0

    def addresses(self, namespace: str, name: str) -> list[EndpointAddress]:
        """Ready addresses of the service's Endpoints, in the order given."""
        out: list[EndpointAddress] = []
        for subset in (self.endpoints.get((namespace, name)) or {}).get("subsets") or []:
            ports = tuple((str(p.get("name") or ""), str(p.get("protocol") or "TCP"), p["port"])
                          for p in subset.get("ports") or [] if isinstance(p.get("port"), int))
            for address in subset.get("addresses") or []:
                ip = address.get("ip")
                if ip:
                    out.append(EndpointAddress(ip=ip, hostname=address.get("hostname") or dashed(ip),
                                               ports=ports))
        return out

    def owners(self, ip: str) -> list[tuple[str, str, str | None]]:
        """(namespace, service, endpoint hostname or None) for every name
        that answers with ``ip``: cluster IPs first, then endpoints."""
        if self._reverse is None:
            reverse: dict[str, list[tuple[str, str, str | None]]] = {}
            for (ns, name), svc in sorted(self.services.items()):
                for cip in cluster_ips(svc):
                    reverse.setdefault(cip, []).append((ns, name, None))
            for (ns, name), _svc in sorted(self.services.items()):
                for address in self.addresses(ns, name):
                    entry = (ns, name, address.hostname)
                    if entry not in reverse.setdefault(address.ip, []):
                        reverse[address.ip].append(entry)
            self._reverse = reverse
        return self._reverse.get(ip, [])
