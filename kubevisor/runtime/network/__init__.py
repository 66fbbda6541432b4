"""Pod networking and the service proxy on one host.

The node agent builds a :class:`NetworkConfig`, calls :func:`start_network`
once at start-up (after every restart too: each step is idempotent and
re-adopts what exists) and then uses ``network.pods`` (a
:class:`~kubevisor.runtime.types.PodNetwork`) and ``network.proxy`` (a
:class:`~kubevisor.runtime.types.ServiceProxy`).

Modules: ``config`` (the config and capabilities records), ``bridge`` (the
node bridge, sysctls, pod egress masquerade), ``ipam`` (file-backed
addresses), ``pods`` (namespaces and veths), ``rules`` (the nft ruleset,
pure), ``proxy`` (applies it), ``announce`` (the load-balancer address
link), ``nft``/``netlink``/``sysctl`` (thin shells over the tools).
"""

from __future__ import annotations

from dataclasses import dataclass

from kubevisor.runtime.errors import NetworkError

from . import nft, pods, sysctl
from .config import NetworkCapabilities, NetworkConfig
from .pods import BridgePodNetwork
from .proxy import NftServiceProxy

__all__ = ["BridgePodNetwork", "NetworkCapabilities", "NetworkConfig", "NftServiceProxy",
           "NodeNetwork", "remove_network", "start_network"]


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    config: NetworkConfig
    capabilities: NetworkCapabilities
    pods: BridgePodNetwork
    proxy: NftServiceProxy


async def start_network(config: NetworkConfig) -> NodeNetwork:
    """Detect what the host offers, set the bridge up, clear leftovers of a
    crash, create the load-balancer link; NetworkError when the host can't
    carry pod networking (no nftables, no permission)."""
    if not await nft.works(probe_table=f"{config.nft_table}_probe"):
        raise NetworkError("nftables does not work on this host (nft missing or the kernel "
                           "lacks nf_tables NAT/numgen/reject)")
    pod_network = BridgePodNetwork(config)
    await pod_network.start()
    proxy = NftServiceProxy(config, masquerade_pod_traffic=not pod_network.br_netfilter)
    await proxy.start()
    assert proxy.lb_link_kind is not None
    capabilities = NetworkCapabilities(
        rules_backend="nftables", lb_link_kind=proxy.lb_link_kind,
        br_netfilter=pod_network.br_netfilter,
        route_localnet=sysctl.read("net.ipv4.conf.all.route_localnet") == "1")
    return NodeNetwork(config, capabilities, pod_network, proxy)


async def remove_network(config: NetworkConfig) -> None:
    """Remove every pod's namespace and veth, the bridge, both nft tables and
    the load-balancer link of ``config`` (uninstall and tests); idempotent."""
    await NftServiceProxy(config).remove()
    await pods.remove_all(config)
