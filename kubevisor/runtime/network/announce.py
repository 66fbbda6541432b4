"""The link that holds LoadBalancer (external) IPs as /32 host addresses.

Called by the service proxy on every sync: the addresses on the link are
made exactly the external IPs of the current rules (new ones added, stale
ones removed). A local address is answered for on every interface (ARP,
weak host model), which is what announces it on the node's network. The
link is a ``dummy`` when the kernel has them, else an empty bridge.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterable
from typing import Literal

from pyroute2.netlink.exceptions import NetlinkError

from . import netlink

LinkKind = Literal["dummy", "bridge"]


def _ensure_sync(ifname: str) -> LinkKind:
    with netlink.iproute() as ipr:
        existing = netlink.link(ipr, ifname)
        kind = netlink.kind(existing) if existing is not None else None
        if kind not in ("dummy", "bridge"):
            if existing is not None:
                netlink.delete_link(ipr, ifname)
            try:
                ipr.link("add", ifname=ifname, kind="dummy")
                kind = "dummy"
            except NetlinkError as exc:
                if exc.code not in (errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
                ipr.link("add", ifname=ifname, kind="bridge")
                kind = "bridge"
        idx = netlink.index(ipr, ifname)
        assert idx is not None
        ipr.link("set", index=idx, state="up")
        return "dummy" if kind == "dummy" else "bridge"


def _sync_sync(ifname: str, addresses: set[str]) -> None:
    with netlink.iproute() as ipr:
        idx = netlink.index(ipr, ifname)
        assert idx is not None, f"{ifname} is missing (ensure() first)"
        present = netlink.ipv4_addresses(ipr, idx)
        wanted = {(ip, 32) for ip in addresses}
        for ip, plen in present - wanted:
            ipr.addr("del", index=idx, address=ip, prefixlen=plen)
        for ip, plen in wanted - present:
            ipr.addr("add", index=idx, address=ip, prefixlen=plen)


def _remove_sync(ifname: str) -> None:
    with netlink.iproute() as ipr:
        netlink.delete_link(ipr, ifname)


async def ensure(ifname: str) -> LinkKind:
    """Create (or find) the link, up; returns its kind."""
    return await asyncio.to_thread(_ensure_sync, ifname)


async def sync(ifname: str, addresses: Iterable[str]) -> None:
    """Make the link's IPv4 addresses exactly ``addresses`` (as /32)."""
    await asyncio.to_thread(_sync_sync, ifname, set(addresses))


async def remove(ifname: str) -> None:
    await asyncio.to_thread(_remove_sync, ifname)
