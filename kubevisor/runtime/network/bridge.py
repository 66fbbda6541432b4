"""The node bridge: the pods' shared L2 segment and their gateway.

Called by :class:`~kubevisor.runtime.network.pods.BridgePodNetwork` at start
(and again after every agent restart: each step checks before it acts). It
creates the bridge with the pod CIDR's first address, brings it up, routes
the service CIDR onto it (so the host has a route for ClusterIPs and
nothing aimed at an unused one leaves by the default route), turns on
forwarding and the sysctls the proxy relies on, and owns the rules that
masquerades pod traffic leaving the cluster's pod range (written by
the :class:`~.writer.RuleWriter` in use).
"""

from __future__ import annotations

import asyncio

from pyroute2 import IPRoute

from kubevisor.runtime.errors import NetworkError

from . import netlink, sysctl
from .config import NetworkConfig
from .writer import RuleWriter

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # DNAT of 127.0.0.1:<nodePort> to a pod needs loopback sources routable.
    "net.ipv4.conf.all.route_localnet": "1",
}
#: Bridged pod↔pod replies must pass conntrack to undo a service DNAT.
BR_NETFILTER = "net.bridge.bridge-nf-call-iptables"


def _ensure_link(ipr: IPRoute, config: NetworkConfig) -> int:
    existing = netlink.link(ipr, config.bridge)
    if existing is not None and netlink.kind(existing) != "bridge":
        raise NetworkError(f"{config.bridge} exists and is not a bridge ({netlink.kind(existing)})")
    if existing is None:
        ipr.link("add", ifname=config.bridge, kind="bridge")
    idx = netlink.index(ipr, config.bridge)
    assert idx is not None
    gateway = (str(config.gateway), config.network.prefixlen)
    if gateway not in netlink.ipv4_addresses(ipr, idx):
        ipr.addr("add", index=idx, address=gateway[0], prefixlen=gateway[1])
    ipr.link("set", index=idx, state="up")
    ipr.route("replace", dst=config.service_cidr, oif=idx, prefsrc=gateway[0], scope=253)
    return idx


def ensure_sync(config: NetworkConfig) -> bool:
    """Bridge, address, route and sysctls (blocking); True when bridged
    traffic passes the IP hooks (br_netfilter)."""
    with netlink.iproute() as ipr:
        _ensure_link(ipr, config)
    for key, value in SYSCTLS.items():
        sysctl.ensure(key, value)
    if sysctl.read(BR_NETFILTER) is None:
        return False
    sysctl.ensure(BR_NETFILTER, "1")
    return True


async def ensure(config: NetworkConfig, writer: RuleWriter) -> bool:
    """Set the bridge up (idempotent); returns whether br_netfilter is on."""
    br_netfilter = await asyncio.to_thread(ensure_sync, config)
    await writer.replace_node(config)
    return br_netfilter


async def remove(config: NetworkConfig, writer: RuleWriter) -> None:
    """Delete the bridge and its table (uninstall and tests); idempotent.
    Sysctls are left as they are: other things may rely on them."""
    def _delete() -> None:
        with netlink.iproute() as ipr:
            netlink.delete_link(ipr, config.bridge)
    await asyncio.to_thread(_delete)
    await writer.remove_node(config)
