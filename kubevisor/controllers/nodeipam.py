"""The node IPAM controller: every Node gets its own pod CIDR, as
kube-controller-manager's range allocator does with
``--allocate-node-cidrs``.

The cluster's pod range (default ``10.88.0.0/16``) is cut into blocks of
``node_mask`` bits (default /24). A Node without ``spec.podCIDR`` gets the
lowest free block, written to ``spec.podCIDR`` and ``spec.podCIDRs`` by a
compare-and-swap update (a Node that set its own meanwhile keeps it). What
is taken is read from the Nodes themselves, so a restarted controller
resumes from the API alone; a deleted Node's block is free again. When no
block is free, the Node gets a Warning Event ``CIDRNotAvailable`` and waits
until one is released. Pure part: :class:`CIDRSet`; the shell:
:class:`NodeIPAMController`, started by the manager when it is given a
cluster CIDR.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
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
DEFAULT_CLUSTER_CIDR = "10.88.0.0/16"
DEFAULT_NODE_MASK = 24
COMPONENT = "cidrAllocator"
RETRY_SECONDS = 30.0

log = logging.getLogger(__name__)


class CIDRSet:
    """The blocks of one cluster range, and which are taken."""

    def __init__(self, cluster_cidr: str = DEFAULT_CLUSTER_CIDR, *,
                 node_mask: int = DEFAULT_NODE_MASK) -> None:
        self.network = ipaddress.ip_network(cluster_cidr, strict=False)
        assert self.network.prefixlen <= node_mask <= self.network.max_prefixlen, \
            f"node mask /{node_mask} does not fit in {cluster_cidr}"
        assert node_mask - self.network.prefixlen <= 20, "at most 2^20 node blocks"
        self.node_mask = node_mask
        self._size = 1 << (self.network.max_prefixlen - node_mask)
        self.count = 1 << (node_mask - self.network.prefixlen)
        self._taken: set[int] = set()

    def _index(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.network.version or net.prefixlen != self.node_mask or \
                not net.subnet_of(self.network):  # type: ignore[arg-type]
            return None
        return (int(net.network_address) - int(self.network.network_address)) // self._size

    def _cidr(self, index: int) -> str:
        base = ipaddress.ip_address(int(self.network.network_address) + index * self._size)
        return f"{base}/{self.node_mask}"

    def occupy(self, cidr: str) -> bool:
        """Mark ``cidr`` taken; False when it is not one of this range's blocks."""
        index = self._index(cidr)
        if index is None:
            return False
        self._taken.add(index)
        return True

    def release(self, cidr: str) -> None:
        index = self._index(cidr)
        if index is not None:
            self._taken.discard(index)

    def allocate(self) -> str | None:
        """Take the lowest free block; None when all are taken."""
        for index in range(self.count):
            if index not in self._taken:
                self._taken.add(index)
                return self._cidr(index)
        return None

    def taken(self) -> list[str]:
        return [self._cidr(i) for i in sorted(self._taken)]


def node_cidrs(node: JSON) -> list[str]:
    spec = node.get("spec") or {}
    cidrs = [c for c in spec.get("podCIDRs") or () if isinstance(c, str)]
    if spec.get("podCIDR") and spec["podCIDR"] not in cidrs:
        cidrs.insert(0, spec["podCIDR"])
    return cidrs


def recover(cidrs: CIDRSet, nodes: Iterable[JSON]) -> None:
    """Mark every block the given Nodes hold as taken."""
    for node in nodes:
        for cidr in node_cidrs(node):
            cidrs.occupy(cidr)


class NodeIPAMController:
    """Watches Nodes; gives those without a pod CIDR one."""

    def __init__(self, client: Client, *, cluster_cidr: str = DEFAULT_CLUSTER_CIDR,
                 node_mask: int = DEFAULT_NODE_MASK,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self.cidrs = CIDRSet(cluster_cidr, node_mask=node_mask)
        self._clock = clock
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.nodes = self.informers.get("v1", "Node")
        self.nodes.add_handler(self._on_node)
        # One worker: allocations are decided one at a time.
        self.controller: Controller[Key] = Controller("nodeipam", self.reconcile, workers=1)
        # Blocks written but perhaps not yet seen in the cache: node name -> cidr.
        self._assigned: dict[str, str] = {}
        self._warned: set[str] = set()

    def _on_node(self, etype: str, node: JSON, old: JSON | None) -> None:
        name = node["metadata"]["name"]
        if etype == "DELETED":
            self._assigned.pop(name, None)
            self._warned.discard(name)
            if self.nodes.synced.is_set():
                for cidr in node_cidrs(node):
                    if not self._held_by_other(cidr, name):
                        self.cidrs.release(cidr)
                for other in self.nodes.items():  # a block may be free now
                    if not node_cidrs(other):
                        self.controller.queue.add(("", other["metadata"]["name"]))
            return
        for cidr in node_cidrs(node):
            self.cidrs.occupy(cidr)
        if not node_cidrs(node):
            self.controller.queue.add(("", name))
        elif name in self._assigned:
            mine = self._assigned.pop(name)
            if mine not in node_cidrs(node) and not self._held_by_other(mine, name):
                self.cidrs.release(mine)  # the node chose another block itself

    def _held_by_other(self, cidr: str, name: str) -> bool:
        return any(cidr in node_cidrs(n) for n in self.nodes.items()
                   if n["metadata"]["name"] != name) or \
            any(c == cidr for n, c in self._assigned.items() if n != name)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="nodeipam-informers")
            await self.informers.wait_synced(self.nodes)
            recover(self.cidrs, self.nodes.items())
            group.create_task(self.controller.run(), name="nodeipam-controller")

    async def reconcile(self, key: Key) -> Result | None:
        name = key[1]
        node = self.nodes.get(name)
        if node is None or node_cidrs(node) or (node.get("metadata") or {}).get(
                "deletionTimestamp"):
            return None
        cidr = self._assigned.get(name) or self.cidrs.allocate()
        if cidr is None:
            await self._warn(node)
            return Result(requeue_after=RETRY_SECONDS)
        self._assigned[name] = cidr
        body = copy.deepcopy(node)
        body.setdefault("spec", {}).update({"podCIDR": cidr, "podCIDRs": [cidr]})
        try:
            await self.client.update(body)
        except (ConflictError, NotFoundError) as exc:
            # Keep the block for this node until the next look decides.
            raise TemporaryError(f"node {name}: {exc}", delay=0.2) from exc
        self._warned.discard(name)
        log.info("node %s: pod CIDR %s", name, cidr)
        return None

    async def _warn(self, node: JSON) -> None:
        name = node["metadata"]["name"]
        if name in self._warned:
            return
        self._warned.add(name)
        now = rfc3339(self._clock())
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": name,
                               "uid": node["metadata"].get("uid")},
            "reason": "CIDRNotAvailable", "type": "Warning",
            "message": f"Node {name} status is now: CIDRNotAvailable "
                       f"(no free /{self.cidrs.node_mask} in {self.cidrs.network})",
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": "", "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            await self.client.create(event, namespace="default")
        except ClientError:
            pass  # an event is best effort
