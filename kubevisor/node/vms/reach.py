"""Is the guest up? A TCP connect to its address: accepted or refused
(the guest's kernel answered with a reset) both mean the address is
configured and the guest answers; a timeout or an unreachable host means
not yet. The readiness probe's ``tcpSocket`` asks for more: accepted only.
Used by the VM worker.
"""

from __future__ import annotations

import asyncio
import contextlib

#: Where to knock when the VM has no readiness port (refused is fine).
DEFAULT_PORT = 22


async def _connect(host: str, port: int, timeout: float) -> bool | None:
    """True: accepted; False: refused; None: no answer."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except ConnectionRefusedError:
        return False
    except (OSError, TimeoutError):
        return None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def answers(host: str, port: int = DEFAULT_PORT, *, timeout: float = 1.0) -> bool:
    """The host answers on TCP (connection accepted or refused)."""
    return await _connect(host, port, timeout) is not None


async def accepts(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """A connection to ``port`` is accepted."""
    return await _connect(host, port, timeout) is True
