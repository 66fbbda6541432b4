"""The service proxy: ClusterIP, NodePort and external IPs in nftables.

Called by the node agent with the whole set of service ports whenever
Services or their endpoints change (level-triggered: ``sync`` takes the
full desired set, never a delta). Each sync renders :mod:`.rules` and swaps
the proxy's table in one ``nft -f`` transaction (delete + add), so the
kernel holds either the old rules or the new ones, never a mix (the
iptables fallback, :mod:`.iptables`, commits each table in one
``iptables-restore``); then it
brings the load-balancer link's addresses in line (:mod:`.announce`).

Failure rule: a sync that raises NetworkError left the previous rules in
place (the nft transaction is all or nothing); the addresses are touched
only after the rules went in.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubevisor.runtime.types import ServiceRule

from . import announce
from .announce import LinkKind
from .config import NetworkConfig
from .writer import NftWriter, RuleWriter


class NftServiceProxy:
    """:class:`~kubevisor.runtime.types.ServiceProxy` over one nft table
    (or, where nftables does not work, iptables chains: ``writer``)."""

    def __init__(self, config: NetworkConfig, *, writer: RuleWriter | None = None,
                 masquerade_pod_traffic: bool = False) -> None:
        self.config = config
        self.writer: RuleWriter = writer or NftWriter()
        self.masquerade_pod_traffic = masquerade_pod_traffic
        self.lb_link_kind: LinkKind | None = None

    async def start(self) -> None:
        """Create the load-balancer link (idempotent). Rules already in the
        kernel stay until the first ``sync`` replaces them, so traffic keeps
        flowing across an agent restart."""
        self.lb_link_kind = await announce.ensure(self.config.lb_link)

    async def sync(self, rules_: Sequence[ServiceRule]) -> None:
        if self.lb_link_kind is None:
            await self.start()
        await self.writer.replace_services(self.config, rules_,
                                           masquerade_pod_traffic=self.masquerade_pod_traffic)
        await announce.sync(self.config.lb_link, {ip for r in rules_ for ip in r.external_ips})

    async def remove(self) -> None:
        """Delete the table and the load-balancer link (uninstall, tests)."""
        await self.writer.remove_services(self.config)
        await announce.remove(self.config.lb_link)
