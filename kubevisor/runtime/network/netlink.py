"""Small helpers over pyroute2's IPRoute, with netlink errors translated
into :class:`~kubevisor.runtime.errors.NetworkError` where they enter.

Called (in worker threads) by the bridge, the pod set-up and the
load-balancer address holder.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyroute2.config
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kubevisor.runtime.errors import NetworkError


def quiet_forked_helpers() -> None:
    """Let pyroute2's forked namespace helpers die of the SIGTERM it sends
    them instead of running the parent's signal handlers: a forked child
    shares asyncio's (and uvloop's) signal wakeup socket, so its SIGTERM
    would otherwise reach the parent's event loop as if the process itself
    had been asked to stop. Process-wide and idempotent; :func:`start_network`
    and :func:`remove_network` call it before any namespace is opened."""
    pyroute2.config.disable_mp_signal = True


@contextmanager
def iproute(netns: str | None = None) -> Iterator[IPRoute]:
    """An IPRoute on the host, or inside the named/path ``netns``; any
    netlink or OS error inside the block becomes a NetworkError."""
    try:
        ipr = IPRoute(netns=netns) if netns else IPRoute()
    except (NetlinkError, OSError) as exc:
        raise NetworkError(f"netlink socket{f' in {netns}' if netns else ''}: {exc}") from exc
    try:
        yield ipr
    except NetlinkError as exc:
        raise NetworkError(f"netlink: {exc}") from exc
    finally:
        ipr.close()


def index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def link(ipr: IPRoute, ifname: str) -> Any | None:
    idx = index(ipr, ifname)
    if idx is None:
        return None
    try:
        return ipr.link("get", index=idx)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def ipv4_addresses(ipr: IPRoute, idx: int) -> set[tuple[str, int]]:
    """(address, prefix length) of every IPv4 address on link ``idx``."""
    return {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.addr("dump", family=2, index=idx)}


def delete_link(ipr: IPRoute, ifname: str) -> bool:
    """Delete ``ifname`` if it exists; True when something was deleted."""
    idx = index(ipr, ifname)
    if idx is None:
        return False
    try:
        ipr.link("del", index=idx)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise
    return True
