"""What the node network is built from, and what the host turned out to offer.

:class:`NetworkConfig` is built by the node agent (or a test) and handed to
:func:`~kubevisor.runtime.network.start_network`; every name it derives
(bridge, namespaces, veths, nft tables, the load-balancer link) carries one
prefix so that a test can run beside a real agent and clean up after itself.
:class:`NetworkCapabilities` is the record of what detection found.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

#: Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
IFNAME_MAX = 15

RulesBackend = Literal["nftables", "iptables-nft", "iptables-legacy"]


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """One node's pod network.

    ``pod_cidr`` is this node's slice of the cluster's pod range (the caller
    carves it, e.g. a /24 of 10.88.0.0/14); its first address is the bridge's
    gateway. ``cluster_cidr`` is the whole pod range, the boundary for
    masquerading (traffic from pods to anything outside it is masqueraded);
    None means ``pod_cidr``. ``state_dir`` holds the IPAM file.
    """

    pod_cidr: str = "10.88.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    state_dir: str = "/var/lib/kubevisor/network"
    cluster_cidr: str | None = None
    bridge: str = "kv0"
    netns_prefix: str = "kv-"
    veth_prefix: str = "kvv"
    lb_link: str = "kvlb"
    nft_table: str = "kubevisor"
    #: The packet-mark bit that asks for masquerading (kube-proxy's bit).
    masquerade_bit: int = 0x4000

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.pod_cidr)
        assert net.version == 4 and net.prefixlen <= 30, f"pod_cidr {self.pod_cidr}: IPv4, /30 or larger"
        assert ipaddress.ip_network(self.service_cidr).version == 4, "service_cidr: IPv4"
        if self.cluster_cidr is not None:
            assert net.subnet_of(ipaddress.ip_network(self.cluster_cidr)), "pod_cidr must lie in cluster_cidr"  # type: ignore[arg-type]
        for name in (self.bridge, self.lb_link):
            assert 0 < len(name) <= IFNAME_MAX, f"interface name {name!r}: 1-15 characters"
        assert len(self.veth_prefix) <= IFNAME_MAX - 6, "veth_prefix: at most 9 characters"
        assert self.nft_table.isalnum() and len(self.nft_table) <= 10, \
            "nft_table: at most 10 letters or digits (iptables chain names derive from it)"
        assert self.masquerade_bit and not self.masquerade_bit & (self.masquerade_bit - 1), "one bit"

    @classmethod
    def with_prefix(cls, prefix: str, **kwargs: object) -> NetworkConfig:
        """Every name derived from ``prefix`` (tests use ``kvt<random>``)."""
        names: dict[str, object] = {
            "bridge": f"{prefix}0", "netns_prefix": f"{prefix}-", "veth_prefix": prefix,
            "lb_link": f"{prefix}lb", "nft_table": prefix,
        }
        return cls(**{**names, **kwargs})  # type: ignore[arg-type]

    # ------------------------------------------------------------ derived

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.pod_cidr, strict=False)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 1

    @property
    def masquerade_boundary(self) -> str:
        return str(ipaddress.ip_network(self.cluster_cidr or self.pod_cidr, strict=False))

    @property
    def node_table(self) -> str:
        """The nft table the bridge owns (pod egress masquerade)."""
        return f"{self.nft_table}_node"


@dataclass(frozen=True, slots=True)
class NetworkCapabilities:
    """What this host's kernel and tools offer, detected at start.

    ``rules_backend``: how service and masquerade rules are written.
    ``lb_link_kind``: "dummy" when the kernel has dummy links, else an
    empty bridge stands in as the holder of load-balancer addresses.
    ``br_netfilter``: bridged traffic passes the IP hooks; without it the
    proxy masquerades every pod→service connection so replies come back
    through the host.
    """

    rules_backend: RulesBackend
    lb_link_kind: Literal["dummy", "bridge"]
    br_netfilter: bool
    route_localnet: bool
