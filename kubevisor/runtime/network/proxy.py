"""The service proxy: ClusterIP, NodePort and external IPs in nftables.

Called by the node agent with the whole set of service ports whenever
Services or their endpoints change (level-triggered: ``sync`` takes the
full desired set, never a delta). Each sync renders :mod:`.rules` and swaps
the proxy's table in one ``nft -f`` transaction (delete + add), so the
kernel holds either the old rules or the new ones, never a mix; then it
brings the load-balancer link's addresses in line (:mod:`.announce`).

Failure rule: a sync that raises NetworkError left the previous rules in
place (the nft transaction is all or nothing); the addresses are touched
only after the rules went in.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubevisor.runtime.types import ServiceRule

from . import announce, nft, rules
from .announce import LinkKind
from .config import NetworkConfig


class NftServiceProxy:
    """:class:`~kubevisor.runtime.types.ServiceProxy` over one nft table."""

    def __init__(self, config: NetworkConfig, *, masquerade_pod_traffic: bool = False) -> None:
        self.config = config
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
        body = rules.render(rules_, cluster_cidr=self.config.masquerade_boundary,
                            masquerade_bit=self.config.masquerade_bit,
                            masquerade_pod_traffic=self.masquerade_pod_traffic)
        await nft.run(nft.replace_table(self.config.nft_table, body))
        await announce.sync(self.config.lb_link, {ip for r in rules_ for ip in r.external_ips})

    async def remove(self) -> None:
        """Delete the table and the load-balancer link (uninstall, tests)."""
        await nft.run(nft.delete_table(self.config.nft_table))
        await announce.remove(self.config.lb_link)
