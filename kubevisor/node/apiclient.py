"""The node agent's API clients: one for the pods, bounded, and one of its
own for the node's heartbeat.

:class:`BoundedClient` lets at most ``concurrency`` requests be in flight
(the rest wait their turn in order on a semaphore, not inside httpx's
connection pool, whose bookkeeping grows with every waiting request), and
keeps as many connections alive, so no request opens a new TLS connection
once the pool is warm. kubelet bounds its API traffic the same way (a QPS
limit); a concurrency bound adapts to how fast the server answers.
Watches are not bounded (they last). :func:`open_clients` builds both
clients from a kubeconfig for :func:`kubevisor.node.agent.run_node`: the
Lease and node status go through a client nothing else uses, so a burst
of pod work never starves the heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from kubevisor.client import Client

JSON = dict[str, Any]
#: Requests in flight for the pods (status writes, events, reads, deletes).
POD_API_CONCURRENCY = 24
#: Requests in flight for the Lease and node status.
HEARTBEAT_CONCURRENCY = 2


class BoundedClient(Client):
    """A :class:`Client` with at most ``concurrency`` requests in flight."""

    def __init__(self, server: str, *, concurrency: int, **kwargs: Any) -> None:
        kwargs.setdefault("max_connections", concurrency)
        kwargs.setdefault("max_keepalive_connections", concurrency)
        super().__init__(server, **kwargs)
        self._slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json") -> JSON:
        async with self._slots:
            return await super().request(method, path, params=params, body=body,
                                         content_type=content_type)


@contextlib.asynccontextmanager
async def open_clients(kubeconfig: Path) -> AsyncIterator[tuple[BoundedClient, BoundedClient]]:
    """(the pods' client, the heartbeat's client), closed on exit."""
    async with contextlib.AsyncExitStack() as stack:
        pods = await stack.enter_async_context(
            BoundedClient.from_kubeconfig(kubeconfig, concurrency=POD_API_CONCURRENCY))
        beat = await stack.enter_async_context(
            BoundedClient.from_kubeconfig(kubeconfig, concurrency=HEARTBEAT_CONCURRENCY))
        yield pods, beat
