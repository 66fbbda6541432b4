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
link), ``writer`` (nftables, or ``iptables`` where nft does not work),
``nft``/``netlink``/``sysctl`` (thin shells over the tools).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import pods, sysctl
from .config import NetworkCapabilities, NetworkConfig, RulesBackend
from .netlink import quiet_forked_helpers
from .pods import BridgePodNetwork
from .proxy import NftServiceProxy
from .writer import detect, writer_for

__all__ = ["BridgePodNetwork", "NetworkCapabilities", "NetworkConfig", "NftServiceProxy",
           "NodeNetwork", "remove_network", "start_network"]


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    config: NetworkConfig
    capabilities: NetworkCapabilities
    pods: BridgePodNetwork
    proxy: NftServiceProxy


async def start_network(config: NetworkConfig, *,
                        rules_backend: RulesBackend | None = None) -> NodeNetwork:
    """Detect what the host offers (or use ``rules_backend``), set the bridge
    up, clear leftovers of a crash, create the load-balancer link;
    NetworkError when the host can't carry pod networking (no nftables nor
    iptables, no permission)."""
    quiet_forked_helpers()
    rule_writer = writer_for(rules_backend) if rules_backend else await detect(config)
    pod_network = BridgePodNetwork(config, writer=rule_writer)
    await pod_network.start()
    proxy = NftServiceProxy(config, writer=rule_writer,
                            masquerade_pod_traffic=not pod_network.br_netfilter)
    await proxy.start()
    assert proxy.lb_link_kind is not None
    capabilities = NetworkCapabilities(
        rules_backend=rule_writer.name, lb_link_kind=proxy.lb_link_kind,
        br_netfilter=pod_network.br_netfilter,
        route_localnet=sysctl.read("net.ipv4.conf.all.route_localnet") == "1")
    return NodeNetwork(config, capabilities, pod_network, proxy)


async def remove_network(config: NetworkConfig, *,
                         rules_backend: RulesBackend = "nftables") -> None:
    """Remove every pod's namespace and veth, the bridge, the rules and the
    load-balancer link of ``config`` (uninstall and tests); idempotent."""
    quiet_forked_helpers()
    rule_writer = writer_for(rules_backend)
    await NftServiceProxy(config, writer=rule_writer).remove()
    await pods.remove_all(config, rule_writer)
