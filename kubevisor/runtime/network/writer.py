"""Who writes the kernel's rules: nftables when it works, else iptables.

Called by :func:`~kubevisor.runtime.network.start_network` (``detect``) and
then by the bridge (pod egress masquerade) and the proxy (services). Both
writers replace their rules as a whole, in one transaction per call.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from typing import Protocol

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.types import ServiceRule

from . import nft, rules
from .config import NetworkConfig, RulesBackend
from .iptables import IptablesWriter


class RuleWriter(Protocol):
    name: RulesBackend

    async def replace_node(self, config: NetworkConfig) -> None:
        """Pods' traffic leaving the cluster's pod range is masqueraded."""
    async def replace_services(self, config: NetworkConfig, rules: Sequence[ServiceRule], *,
                               masquerade_pod_traffic: bool = False) -> None: ...
    async def remove_node(self, config: NetworkConfig) -> None: ...
    async def remove_services(self, config: NetworkConfig) -> None: ...


def node_table_body(config: NetworkConfig) -> str:
    return (
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {config.network} ip daddr != {config.masquerade_boundary} masquerade\n"
        "  }\n")


class NftWriter:
    """Two ``table ip``: ``<nft_table>_node`` (bridge) and ``<nft_table>`` (proxy)."""

    name: RulesBackend = "nftables"

    async def replace_node(self, config: NetworkConfig) -> None:
        await nft.run(nft.replace_table(config.node_table, node_table_body(config)))

    async def replace_services(self, config: NetworkConfig, rules_: Sequence[ServiceRule], *,
                               masquerade_pod_traffic: bool = False) -> None:
        body = rules.render(rules_, cluster_cidr=config.masquerade_boundary,
                            masquerade_bit=config.masquerade_bit,
                            masquerade_pod_traffic=masquerade_pod_traffic)
        await nft.run(nft.replace_table(config.nft_table, body))

    async def remove_node(self, config: NetworkConfig) -> None:
        await nft.run(nft.delete_table(config.node_table))

    async def remove_services(self, config: NetworkConfig) -> None:
        await nft.run(nft.delete_table(config.nft_table))


def writer_for(backend: RulesBackend) -> RuleWriter:
    return NftWriter() if backend == "nftables" else IptablesWriter(backend)


async def _iptables_works(cmd: str) -> bool:
    if shutil.which(cmd) is None or shutil.which(f"{cmd}-restore") is None:
        return False
    proc = await asyncio.create_subprocess_exec(
        cmd, "-w", "-t", "nat", "-S", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait() == 0


async def detect(config: NetworkConfig) -> RuleWriter:
    """nftables if ``nft`` takes a NAT/numgen/reject ruleset here; else
    iptables-nft, else iptables-legacy; NetworkError when none works."""
    if await nft.works(probe_table=f"{config.nft_table}_probe"):
        return NftWriter()
    for backend, cmd in (("iptables-nft", "iptables-nft"), ("iptables-legacy", "iptables-legacy")):
        if await _iptables_works(cmd):
            return IptablesWriter(backend)  # type: ignore[arg-type]
    raise NetworkError("neither nftables nor iptables works on this host (missing tools, "
                       "no nf_tables/ip_tables NAT in the kernel, or no permission)")
