"""ClusterIP and NodePort ranges, each allocation a reservation key in the store.

Every cluster IP and node port a Service holds is a key of its own
(``/registry/ranges/serviceips/<ip>``, ``/registry/ranges/servicenodeports/<port>``)
written with create-if-absent, so two creates, in this process or in two
apiservers sharing one etcd, can never take the same value; the value of
the key names its owner (namespace, name, uid) and when it was taken.

Each apiserver keeps a view of what is reserved (:func:`load` at start,
then :func:`sync_loop` from a store watch) to pick a free candidate
without a round trip per guess. Dynamic picks are random in the upper part
of a range and fall back to its lower part, which stays free for values
users ask for (kube's ServiceIPStaticSubrange and
ServiceNodePortStaticSubrange). :func:`repair` (at start and every few
minutes, as kube-apiserver's repair controllers do) reconciles the keys
with the stored Services: a Service stored without reservations gets them,
and a reservation no Service holds (a create that failed after reserving,
a crash between a delete and its release) is removed once older than a
grace period. Called by :mod:`kubevisor.apiserver.services` and the app's
lifespan.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubevisor.store import errors as store_errors
from kubevisor.store.base import Store

JSON = dict[str, Any]

log = logging.getLogger(__name__)

ROOT = "/registry/ranges/"
IP_PREFIX = ROOT + "serviceips/"
PORT_PREFIX = ROOT + "servicenodeports/"
SERVICES_PREFIX = "/registry/core/services/"
#: A reservation nobody holds is removed only when older than this (seconds):
#: a create between its reservation and its write must not lose it.
REPAIR_GRACE_SECONDS = 60.0
REPAIR_INTERVAL_SECONDS = 180.0

_rand = random.Random()


class IPRange:
    """The usable addresses of a CIDR: the network address is never handed
    out, nor the broadcast address of an IPv4 range."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
        self.cidr = str(net)
        self.network = net
        self.version = net.version
        self.base = int(net.network_address) + 1
        last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
        self.size = max(last - self.base + 1, 0)
        self.static = min(max(16, self.size // 16), 256, self.size)

    def value(self, offset: int) -> str:
        return str(ipaddress.ip_address(self.base + offset))

    def contains(self, value: str) -> bool:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return False
        return addr.version == self.version and 0 <= int(addr) - self.base < self.size

    def not_in_range(self) -> str:
        return f"provided IP is not in the valid range. The range of valid IPs is {self.cidr}"

    def first(self) -> str:
        """The first usable address (the ``kubernetes`` Service's ClusterIP)."""
        return self.value(0)


class PortRange:
    """``30000-32767`` (or one port)."""

    def __init__(self, spec: str) -> None:
        low, _, high = spec.strip().partition("-")
        self.low = int(low)
        self.high = int(high) if high else self.low
        assert 0 < self.low <= self.high <= 65535, f"bad node port range {spec!r}"
        self.base = self.low
        self.size = self.high - self.low + 1
        self.static = min(max(16, self.size // 32), 128, self.size)

    def value(self, offset: int) -> str:
        return str(self.base + offset)

    def contains(self, value: str) -> bool:
        return value.isdigit() and self.low <= int(value) <= self.high

    def not_in_range(self) -> str:
        return ("provided port is not in the valid range. The range of valid ports is "
                f"{self.low}-{self.high}")


Range = IPRange | PortRange


def candidates(rng: Range, used: set[str], rand: random.Random = _rand) -> Iterator[str]:
    """Free-looking values of ``rng``: random ones from the dynamic (upper)
    band, then a scan of it, then the same for the static (lower) band."""
    for lo, hi in ((rng.static, rng.size), (0, rng.static)):
        span = hi - lo
        if span <= 0:
            continue
        for _ in range(min(32, span)):
            value = rng.value(lo + rand.randrange(span))
            if value not in used:
                yield value
        start = rand.randrange(span)
        for i in range(span):
            value = rng.value(lo + (start + i) % span)
            if value not in used:
                yield value


def owner_of(svc: JSON) -> JSON:
    meta = svc.get("metadata") or {}
    return {"namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "uid": meta.get("uid", ""), "time": time.time()}


class Reservations:
    """One range's reservation keys, and this process's view of them."""

    def __init__(self, store: Store, prefix: str, rng: Range) -> None:
        self.store = store
        self.prefix = prefix
        self.range = rng
        self.used: set[str] = set()

    def key(self, value: str) -> str:
        return self.prefix + value

    async def reserve(self, value: str, owner: JSON) -> bool:
        """Take ``value`` for ``owner``; True if it is now (or already was) theirs."""
        try:
            await self.store.create(self.key(value), orjson.dumps(owner))
        except store_errors.KeyExistsError:
            self.used.add(value)
            return await self._owned_by(value, owner["uid"])
        self.used.add(value)
        return True

    async def reserve_next(self, owner: JSON) -> str | None:
        """A free value reserved for ``owner``; None when the range is full."""
        for value in candidates(self.range, self.used):
            if await self.reserve(value, owner):
                return value
        return None

    async def taken(self, value: str, uid: str) -> bool:
        """Held by someone other than ``uid`` (a dry run's check)."""
        if await self.store.get(self.key(value)) is None:
            return False
        return not await self._owned_by(value, uid)

    def pick(self) -> str | None:
        """A value that looks free, not reserved (a dry run's answer)."""
        return next(candidates(self.range, self.used), None)

    async def release(self, value: str, uid: str) -> None:
        """Drop ``uid``'s reservation of ``value`` (someone else's stays)."""
        kv = await self.store.get(self.key(value))
        if kv is None:
            self.used.discard(value)
            return
        if orjson.loads(kv.value).get("uid") != uid:
            return
        try:
            await self.store.delete(kv.key, expected_mod_revision=kv.mod_revision)
        except (store_errors.KeyNotFoundError, store_errors.ConflictError):
            return
        self.used.discard(value)

    async def _owned_by(self, value: str, uid: str) -> bool:
        kv = await self.store.get(self.key(value))
        return kv is not None and bool(uid) and orjson.loads(kv.value).get("uid") == uid


@dataclass(slots=True)
class Allocators:
    """The cluster IP and node port reservations of one apiserver."""

    ips: Reservations
    ports: Reservations
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, store: Store, *, cidr: str, node_ports: str) -> Allocators:
        return cls(Reservations(store, IP_PREFIX, IPRange(cidr)),
                   Reservations(store, PORT_PREFIX, PortRange(node_ports)))

    def note(self, key: str, present: bool) -> None:
        for res in (self.ips, self.ports):
            if key.startswith(res.prefix):
                value = key[len(res.prefix):]
                if present:
                    res.used.add(value)
                else:
                    res.used.discard(value)


# --- what a Service holds -----------------------------------------------------


def held_ips(svc: JSON | None) -> set[str]:
    spec = (svc or {}).get("spec") or {}
    ips = set(spec.get("clusterIPs") or ())
    if spec.get("clusterIP"):
        ips.add(spec["clusterIP"])
    ips.discard("None")
    ips.discard("")
    return {ip for ip in ips if isinstance(ip, str)}


def held_ports(svc: JSON | None) -> set[str]:
    spec = (svc or {}).get("spec") or {}
    ports = {str(p["nodePort"]) for p in spec.get("ports") or ()
             if isinstance(p, dict) and isinstance(p.get("nodePort"), int) and p["nodePort"]}
    hc = spec.get("healthCheckNodePort")
    if isinstance(hc, int) and hc:
        ports.add(str(hc))
    return ports


# --- the view: load, watch, repair ----------------------------------------------


async def load(allocators: Allocators) -> int:
    """Fill the view from the store; the revision it was read at."""
    store = allocators.ips.store
    res = await store.range(ROOT)
    allocators.ips.used.clear()
    allocators.ports.used.clear()
    for kv in res.kvs:
        allocators.note(kv.key, True)
    return res.revision


async def sync_loop(allocators: Allocators, revision: int) -> None:
    """Keep the view current from a store watch (reservations by other apiservers)."""
    store = allocators.ips.store
    while True:
        watcher = store.watch(ROOT, after_revision=revision)
        try:
            async for events in watcher:
                for ev in events:
                    revision = ev.revision
                    allocators.note(ev.kv.key, ev.type == "PUT")
            return
        except store_errors.CompactedError:
            revision = await load(allocators)
        except store_errors.StoreError:
            log.warning("service range watch ended; restarting", exc_info=True)
            await asyncio.sleep(1.0)
            revision = await load(allocators)
        finally:
            await watcher.close()


async def repair(allocators: Allocators, *, now: float | None = None,
                 grace: float = REPAIR_GRACE_SECONDS) -> tuple[int, int]:
    """Reconcile reservation keys with stored Services; (created, removed)."""
    store = allocators.ips.store
    now = time.time() if now is None else now
    services = await store.range(SERVICES_PREFIX)
    wanted: dict[str, JSON] = {}  # reservation key -> owner
    for kv in services.kvs:
        svc = orjson.loads(kv.value)
        owner = owner_of(svc)
        for ip in held_ips(svc):
            if allocators.ips.range.contains(ip):
                wanted[allocators.ips.key(ip)] = owner
        for port in held_ports(svc):
            if allocators.ports.range.contains(port):
                wanted[allocators.ports.key(port)] = owner
    removed = created = 0
    existing = await store.range(ROOT)
    present: set[str] = set()
    for kv in existing.kvs:
        owner = orjson.loads(kv.value)
        holder = wanted.get(kv.key)
        if holder is not None and holder["uid"] == owner.get("uid"):
            present.add(kv.key)
            continue
        if now - float(owner.get("time") or 0) < grace:
            present.add(kv.key)
            continue
        try:
            await store.delete(kv.key, expected_mod_revision=kv.mod_revision)
        except (store_errors.KeyNotFoundError, store_errors.ConflictError):
            continue
        allocators.note(kv.key, False)
        removed += 1
    for key, owner in wanted.items():
        if key in present:
            continue
        try:
            await store.create(key, orjson.dumps(owner))
        except store_errors.KeyExistsError:
            log.warning("%s is held by %s/%s but reserved for another owner",
                        key, owner["namespace"], owner["name"])
            continue
        allocators.note(key, True)
        created += 1
    return created, removed


async def repair_loop(allocators: Allocators,
                      interval: float = REPAIR_INTERVAL_SECONDS) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await repair(allocators)
        except store_errors.StoreError:
            log.warning("service range repair failed", exc_info=True)
