"""A VM's tap devices on the node bridge. QEMU creates each tap itself
(``-netdev tap,ifname=...``) as a non-persistent device, so the tap
disappears when QEMU exits, however it exits; the driver only puts it on
its bridge and up once QEMU runs, and deletes a stale one that would be
in the way. Called by :mod:`~kubevisor.runtime.qemu.driver`; netlink
errors become :class:`~kubevisor.runtime.errors.NetworkError`.
"""

from __future__ import annotations

import asyncio

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.network.netlink import delete_link, index, iproute


def _attach(tap: str, bridge: str) -> None:
    with iproute() as ipr:
        idx = index(ipr, tap)
        if idx is None:
            raise NetworkError(f"tap {tap} does not exist (QEMU did not create it)")
        if bridge:
            master = index(ipr, bridge)
            if master is None:
                    raise NetworkError(f"bridge {bridge} does not exist")
            ipr.link("set", index=idx, master=master)
        ipr.link("set", index=idx, state="up")


async def attach(tap: str, bridge: str) -> None:
    """Enslave ``tap`` to ``bridge`` (when set) and bring it up."""
    await asyncio.to_thread(_attach, tap, bridge)


def _remove(tap: str) -> None:
    with iproute() as ipr:
        delete_link(ipr, tap)


async def remove(tap: str) -> None:
    """Delete ``tap`` if it exists (a leftover persistent tap); idempotent."""
    await asyncio.to_thread(_remove, tap)


def _exists(tap: str) -> bool:
    with iproute() as ipr:
        return index(ipr, tap) is not None


async def exists(tap: str) -> bool:
    return await asyncio.to_thread(_exists, tap)
