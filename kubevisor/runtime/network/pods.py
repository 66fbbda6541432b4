"""Pod network namespaces on the node bridge: the :class:`PodNetwork` driver.

Called by the node agent: ``start()`` once (it sets the bridge up and clears
what a crash left half-made), then ``setup_pod`` before a pod's first
container and ``teardown_pod`` after its last. Each pod gets a named network
namespace ``/run/netns/<netns_prefix><hash>``, a veth pair whose host end
(``<veth_prefix><hash>``) sits on the bridge and whose other end is ``eth0``
in the namespace, an address from :class:`~.ipam.Ipam`, ``lo`` up and a
default route via the bridge's gateway.

Failure rule: a ``setup_pod`` that raises leaves nothing of that pod (no
namespace, no veth, no address held). ``teardown_pod`` is idempotent. All
state is on the host (namespaces, links) and in the IPAM file, so a new
object over the same config finds every pod again (``list_pods``).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os

from pyroute2 import netns
from pyroute2.netlink.exceptions import NetlinkError

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.types import PodNetworkInfo

from . import bridge, iproute2, netlink
from .config import IFNAME_MAX, NetworkConfig
from .ipam import Ipam
from .vmports import is_vm_owner
from .writer import NftWriter, RuleWriter

NETNS_DIR = "/run/netns"
POD_IFNAME = "eth0"


def pod_hash(pod_id: str) -> str:
    return hashlib.sha256(pod_id.encode()).hexdigest()


class BridgePodNetwork:
    """Pods on a Linux bridge, addressed from a file-backed IPAM."""

    def __init__(self, config: NetworkConfig, *, writer: RuleWriter | None = None) -> None:
        self.config = config
        self.writer: RuleWriter = writer or NftWriter()
        self.ipam = Ipam(config.pod_cidr, config.state_dir)
        self.br_netfilter = False
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------ names

    def netns_name(self, pod_id: str) -> str:
        return f"{self.config.netns_prefix}{pod_hash(pod_id)[:16]}"

    def netns_path(self, pod_id: str) -> str:
        return os.path.join(NETNS_DIR, self.netns_name(pod_id))

    def host_ifname(self, pod_id: str) -> str:
        prefix = self.config.veth_prefix
        return prefix + pod_hash(pod_id)[: IFNAME_MAX - len(prefix)]

    def _info(self, pod_id: str, ip: str) -> PodNetworkInfo:
        return PodNetworkInfo(netns=self.netns_path(pod_id), ip=ip,
                              gateway=str(self.config.gateway),
                              prefix_len=self.config.network.prefixlen)

    # ----------------------------------------------------------- public

    async def start(self) -> None:
        """Set the bridge up (idempotent) and clear leftovers: addresses
        whose namespace is gone (a reboot, a crash mid-set-up), namespaces
        and veths of ours that no address record claims."""
        self.br_netfilter = await bridge.ensure(self.config, self.writer)
        await asyncio.to_thread(self.collect_garbage)

    async def setup_pod(self, pod_id: str) -> PodNetworkInfo:
        async with self._lock(pod_id):
            return await asyncio.to_thread(self._setup, pod_id)

    async def teardown_pod(self, pod_id: str) -> None:
        async with self._lock(pod_id):
            await asyncio.to_thread(self._teardown, pod_id)

    async def list_pods(self) -> dict[str, PodNetworkInfo]:
        allocations = await asyncio.to_thread(self.ipam.allocations)
        return {pod_id: self._info(pod_id, ip) for pod_id, ip in allocations.items()
                if os.path.exists(self.netns_path(pod_id))}

    # -------------------------------------------------- blocking work

    def _lock(self, pod_id: str) -> asyncio.Lock:
        return self._locks.setdefault(pod_id, asyncio.Lock())

    def _setup(self, pod_id: str) -> PodNetworkInfo:
        ip = str(self.ipam.allocate(pod_id))
        info = self._info(pod_id, ip)
        try:
            if self._complete(pod_id, ip):
                return info
            self._build(pod_id, ip)
        except Exception as exc:
            try:
                self._teardown(pod_id)
            except NetworkError as cleanup:
                exc.add_note(f"cleanup after the failed set-up also failed: {cleanup}")
            if isinstance(exc, (NetlinkError, OSError)):
                raise NetworkError(f"pod {pod_id}: network set-up failed: {exc}") from exc
            raise
        return info

    def _complete(self, pod_id: str, ip: str) -> bool:
        """True when the namespace, both veth ends, the address and the
        route are all in place (a set-up that already happened)."""
        name = self.netns_name(pod_id)
        if name not in netns.listnetns(NETNS_DIR):
            return False
        with netlink.iproute() as ipr:
            host = netlink.link(ipr, self.host_ifname(pod_id))
            bridge_idx = netlink.index(ipr, self.config.bridge)
            if host is None or host.get_attr("IFLA_MASTER") != bridge_idx or host["flags"] & 1 == 0:
                return False
        with netlink.iproute(name) as ns:
            idx = netlink.index(ns, POD_IFNAME)
            if idx is None:
                return False
            if (ip, self.config.network.prefixlen) not in netlink.ipv4_addresses(ns, idx):
                return False
            routes = ns.route("dump", family=2, table=254, dst_len=0)
            return any(r.get_attr("RTA_GATEWAY") == str(self.config.gateway) for r in routes)

    def _build(self, pod_id: str, ip: str) -> None:
        """Namespace, veth pair on the bridge (hairpin on), ``lo`` and
        ``eth0`` up, the address and the default route: two ``ip -batch``
        runs, one on the host and one inside the namespace."""
        name, host_if = self.netns_name(pod_id), self.host_ifname(pod_id)
        host: list[str] = []
        if os.path.exists(os.path.join(NETNS_DIR, name)):
            # A half-made pair from an earlier attempt.
            iproute2.run_batch([f"link del {host_if}"], force=True)
            iproute2.run_batch([f"link del {POD_IFNAME}"], netns=name, force=True)
        else:
            host.append(f"netns add {name}")
        # Hairpin: a pod reaching itself through a service is DNATed (in the
        # bridge's netfilter hook) back out of the port it came in by.
        host += [f"link add {host_if} type veth peer name {POD_IFNAME} netns {name}",
                 f"link set {host_if} master {self.config.bridge}",
                 f"link set {host_if} type bridge_slave hairpin on",
                 f"link set {host_if} up"]
        try:
            iproute2.run_batch(host)
        except NetworkError as exc:
            if not os.path.exists(f"/sys/class/net/{self.config.bridge}"):
                raise NetworkError(f"bridge {self.config.bridge} is missing "
                                   f"(start() not called?)") from exc
            raise
        iproute2.run_batch(["link set lo up",
                            f"addr add {ip}/{self.config.network.prefixlen} dev {POD_IFNAME}",
                            f"link set {POD_IFNAME} up",
                            f"route replace default via {self.config.gateway} dev {POD_IFNAME}"],
                           netns=name)

    def _teardown(self, pod_id: str) -> None:
        # The host end first: with containers still inside, the namespace
        # (and the pair with it) outlives the removal of its name.
        host_if = self.host_ifname(pod_id)
        try:
            iproute2.run_batch([f"link del {host_if}"])
        except NetworkError as exc:
            if "Cannot find device" not in str(exc):
                raise
        self._remove_netns(self.netns_name(pod_id))
        self.ipam.release(pod_id)

    @staticmethod
    def _remove_netns(name: str) -> None:
        if not os.path.exists(os.path.join(NETNS_DIR, name)):
            return
        try:
            netns.remove(name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise NetworkError(f"cannot remove network namespace {name}: {exc}") from exc

    def collect_garbage(self) -> None:
        """Release addresses whose namespace is gone; delete our namespaces
        and veths that no address claims (blocking). VM addresses (owners
        ``vm:...``, see :mod:`.vmports`) have no namespace and are never
        touched: the VM runner frees them."""
        allocations = {owner: ip for owner, ip in self.ipam.allocations().items()
                       if not is_vm_owner(owner)}
        wanted_ns = {self.netns_name(p) for p in allocations}
        wanted_if = {self.host_ifname(p) for p in allocations}
        for pod_id in allocations:
            if self.netns_name(pod_id) not in netns.listnetns(NETNS_DIR):
                self._teardown(pod_id)
                wanted_ns.discard(self.netns_name(pod_id))
                wanted_if.discard(self.host_ifname(pod_id))
        for name in netns.listnetns(NETNS_DIR):
            if name.startswith(self.config.netns_prefix) and name not in wanted_ns:
                self._remove_netns(name)
        with netlink.iproute() as ipr:
            bridge_idx = netlink.index(ipr, self.config.bridge)
            for msg in ipr.link("dump"):
                ifname = msg.get_attr("IFLA_IFNAME")
                ours = (netlink.kind(msg) == "veth" and ifname.startswith(self.config.veth_prefix)
                        and msg.get_attr("IFLA_MASTER") in (None, bridge_idx)
                        and ifname != self.config.bridge)
                if ours and ifname not in wanted_if:
                    netlink.delete_link(ipr, ifname)


async def remove_all(config: NetworkConfig, writer: RuleWriter) -> None:
    """Tear down every pod, the namespaces and veths of ``config``, the
    bridge and its rules (uninstall and tests); idempotent."""
    net = BridgePodNetwork(config, writer=writer)
    for pod_id in (await asyncio.to_thread(net.ipam.allocations)):
        await net.teardown_pod(pod_id)
    await asyncio.to_thread(net.collect_garbage)
    await bridge.remove(config, writer)
