"""The LoadBalancer controller: Services of type LoadBalancer get an address
from a pool (what kube's service controller asks a cloud for, done here as
bare-metal load balancers such as MetalLB do).

The pool is a CIDR, a range ``first-last`` or a comma-separated list of
those, given to the controller manager. A Service of type LoadBalancer
without ``spec.loadBalancerClass`` gets ``status.loadBalancer.ingress:
[{ip, ipMode: VIP}]``: ``spec.loadBalancerIP`` when it is in the pool and
free, otherwise the lowest free address. What is taken is read from the
Services themselves (the addresses in their status), so a restarted
controller resumes from the API alone; an address is free again once its
Service is deleted or is no longer of type LoadBalancer (the status is then
cleared). When nothing is free, a Warning Event ``AllocationFailed`` says
so and the Service waits for an address to be released. The node agent's
proxy announces the addresses on the host. Pure part: :func:`parse_pool`,
:func:`choose`; the shell: :class:`LoadBalancerController`, started by the
manager.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from kubevisor.client import (
    Client,
    ClientError,
    ConflictError,
    NotFoundError,
    SharedInformers,
)
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]

#: The pool when none is given (``KUBEVISOR_LOADBALANCER_POOL`` overrides it).
DEFAULT_POOL = "172.31.255.0/24"
POOL_ENV = "KUBEVISOR_LOADBALANCER_POOL"
COMPONENT = "loadbalancer-controller"
RETRY_SECONDS = 30.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Pool:
    """An ordered set of addresses."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.ranges: list[tuple[int, int, int]] = []  # (first, last, version)
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if "-" in part:
                lo, hi = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
                assert lo.version == hi.version and lo <= hi, f"bad address range {part!r}"
                self.ranges.append((int(lo), int(hi), lo.version))
            else:
                net = ipaddress.ip_network(part, strict=False)
                first, last = int(net.network_address), int(net.broadcast_address)
                if net.version == 4 and net.prefixlen < 31:
                    first, last = first + 1, last - 1  # not the network and broadcast addresses
                self.ranges.append((first, last, net.version))
        assert self.ranges, f"empty load balancer pool {spec!r}"

    def __contains__(self, ip: object) -> bool:
        try:
            addr = ipaddress.ip_address(str(ip))
        except ValueError:
            return False
        return any(v == addr.version and lo <= int(addr) <= hi for lo, hi, v in self.ranges)

    def addresses(self) -> Iterable[str]:
        for lo, hi, _ in self.ranges:
            for n in range(lo, hi + 1):
                yield str(ipaddress.ip_address(n))


def parse_pool(spec: str | None = None) -> Pool:
    return Pool(spec or os.environ.get(POOL_ENV) or DEFAULT_POOL)


def wants_address(svc: JSON) -> bool:
    spec = svc.get("spec") or {}
    return (spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")
            and not (svc.get("metadata") or {}).get("deletionTimestamp"))


def ingress_ips(svc: JSON) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
    return [i["ip"] for i in ingress if isinstance(i, dict) and i.get("ip")]


def _created(svc: JSON) -> tuple[str, str]:
    md = svc.get("metadata") or {}
    return (md.get("creationTimestamp") or "", md.get("uid") or "")


def taken_by_others(svc: JSON, services: Iterable[JSON], pool: Pool) -> set[str]:
    """Pool addresses other LoadBalancer Services hold (by their status)."""
    me = (svc.get("metadata") or {}).get("uid")
    return {ip for other in services
            if (other.get("metadata") or {}).get("uid") != me and wants_address(other)
            for ip in ingress_ips(other) if ip in pool}


def choose(svc: JSON, services: Iterable[JSON], pool: Pool,
           pending: Iterable[str] = ()) -> tuple[str | None, str]:
    """The address ``svc`` should have, and why not when None
    (``"exhausted"`` or ``"unavailable"`` for a requested address)."""
    services = list(services)
    taken = taken_by_others(svc, services, pool) | set(pending)
    current = [ip for ip in ingress_ips(svc) if ip in pool]
    requested = (svc.get("spec") or {}).get("loadBalancerIP") or ""
    if requested:
        if requested not in pool or requested in taken:
            if current and current[0] == requested:
                # Two Services claim one address: the older keeps it.
                rivals = [o for o in services if requested in ingress_ips(o)
                          and wants_address(o) and o is not svc]
                if all(_created(svc) <= _created(o) for o in rivals):
                    return requested, ""
            return None, "unavailable"
        return requested, ""
    if current and current[0] not in taken:
        return current[0], ""
    for ip in pool.addresses():
        if ip not in taken:
            return ip, ""
    return None, "exhausted"


class LoadBalancerController:
    """Watches Services; writes the status of those of type LoadBalancer."""

    def __init__(self, client: Client, *, pool: str | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self.pool = parse_pool(pool)
        self._clock = clock
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.services = self.informers.get("v1", "Service")
        self.services.add_handler(self._on_service)
        # One worker: allocations are decided one at a time.
        self.controller: Controller[Key] = Controller("loadbalancer", self.reconcile, workers=1)
        # Addresses written but maybe not yet in the cache: key -> ip.
        self._assigned: dict[Key, str] = {}
        self._warned: dict[Key, str] = {}

    def _on_service(self, etype: str, svc: JSON, old: JSON | None) -> None:
        md = svc.get("metadata") or {}
        key = (md.get("namespace", ""), md.get("name", ""))
        relevant = wants_address(svc) or ingress_ips(svc) or (old is not None and
                                                               wants_address(old))
        if relevant or etype == "DELETED":
            self.controller.queue.add(key)
        freed = (etype == "DELETED" and (wants_address(svc) or ingress_ips(svc))) or \
            (old is not None and wants_address(old) and not wants_address(svc))
        if freed:
            # An address may be free now: look again at those still waiting.
            for other in self.services.items():
                if wants_address(other) and not ingress_ips(other):
                    omd = other.get("metadata") or {}
                    self.controller.queue.add((omd.get("namespace", ""), omd.get("name", "")))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="loadbalancer-informers")
            await self.informers.wait_synced(self.services)
            group.create_task(self.controller.run(), name="loadbalancer-controller")

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        svc = self.services.get(name, namespace)
        if svc is None:
            self._assigned.pop(key, None)
            self._warned.pop(key, None)
            return None
        if not wants_address(svc):
            self._assigned.pop(key, None)
            self._warned.pop(key, None)
            if (svc.get("spec") or {}).get("type") != "LoadBalancer" and \
                    any(ip in self.pool for ip in ingress_ips(svc)):
                await self._write(svc, [])
            return None
        pending = [ip for k, ip in self._assigned.items() if k != key]
        ip, why = choose(svc, self.services.items(), self.pool, pending)
        if ip is None:
            self._assigned.pop(key, None)
            await self._warn(svc, why)
            if ingress_ips(svc) and any(i in self.pool for i in ingress_ips(svc)):
                await self._write(svc, [])
            return Result(requeue_after=RETRY_SECONDS)
        self._warned.pop(key, None)
        self._assigned[key] = ip
        if ingress_ips(svc) != [ip]:
            await self._write(svc, [ip])
            await self._event(svc, "Normal", "IPAllocated", f'Assigned IP ["{ip}"]')
        return None

    async def _write(self, svc: JSON, ips: list[str]) -> None:
        body = copy.deepcopy(svc)
        body.setdefault("status", {})["loadBalancer"] = (
            {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]} if ips else {})
        try:
            await self.client.update_status(body)
        except (ConflictError, NotFoundError) as exc:
            raise TemporaryError(f"service {svc['metadata']['name']}: {exc}") from exc

    async def _warn(self, svc: JSON, why: str) -> None:
        md = svc["metadata"]
        key = (md.get("namespace", ""), md.get("name", ""))
        if self._warned.get(key) == why:
            return
        self._warned[key] = why
        if why == "exhausted":
            message = (f'Failed to allocate IP for "{key[0]}/{key[1]}": no available IPs '
                       f"in pool {self.pool.spec}")
        else:
            message = (f'Failed to allocate IP for "{key[0]}/{key[1]}": requested IP '
                       f'"{(svc.get("spec") or {}).get("loadBalancerIP")}" is not free '
                       f"in pool {self.pool.spec}")
        await self._event(svc, "Warning", "AllocationFailed", message)

    async def _event(self, svc: JSON, type_: str, reason: str, message: str) -> None:
        md = svc["metadata"]
        now = rfc3339(self._clock())
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{md['name']}.", "namespace": md.get("namespace")},
            "involvedObject": {"apiVersion": "v1", "kind": "Service", "name": md["name"],
                               "namespace": md.get("namespace"), "uid": md.get("uid"),
                               "resourceVersion": md.get("resourceVersion")},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": "", "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            await self.client.create(event, namespace=md.get("namespace"))
        except ClientError:
            pass  # an event is best effort
