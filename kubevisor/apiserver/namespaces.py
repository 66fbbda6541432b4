"""An in-memory view of which namespaces exist and which are terminating,
for the namespaced-create check (kube-apiserver's NamespaceLifecycle
admission reads a lister cache the same way).

Filled at start (:func:`load`), kept current by a store watch
(:func:`sync_loop`) and by this server's own namespace writes
(:func:`note`). A name the view does not know is looked up in the store,
so a namespace just created through another apiserver is never refused.
Called by the app (lifespan) and the resource handlers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from kubevisor.apiserver.context import Context
from kubevisor.store import errors as store_errors

JSON = dict[str, Any]

log = logging.getLogger(__name__)

PREFIX = "/registry/core/namespaces/"


def _terminating(ns: JSON) -> bool:
    return bool((ns.get("metadata") or {}).get("deletionTimestamp")) or \
        (ns.get("status") or {}).get("phase") == "Terminating"


def note(ctx: Context, name: str, ns: JSON | None) -> None:
    """Record a namespace's new state (None: deleted)."""
    if ns is None:
        ctx.namespaces.pop(name, None)
    else:
        ctx.namespaces[name] = _terminating(ns)


async def load(ctx: Context) -> int:
    res = await ctx.store.range(PREFIX)
    ctx.namespaces.clear()
    for kv in res.kvs:
        note(ctx, kv.key[len(PREFIX):], orjson.loads(kv.value))
    return res.revision


async def sync_loop(ctx: Context, revision: int) -> None:
    while True:
        watcher = ctx.store.watch(PREFIX, after_revision=revision)
        try:
            async for events in watcher:
                for ev in events:
                    revision = ev.revision
                    name = ev.kv.key[len(PREFIX):]
                    note(ctx, name, orjson.loads(ev.kv.value) if ev.type == "PUT" else None)
            return
        except store_errors.CompactedError:
            revision = await load(ctx)
        except store_errors.StoreError:
            log.warning("namespace watch ended; restarting", exc_info=True)
            await asyncio.sleep(1.0)
            revision = await load(ctx)
        finally:
            await watcher.close()


async def state(ctx: Context, name: str) -> bool | None:
    """None: no such namespace; True: terminating; False: active."""
    known = ctx.namespaces.get(name)
    if known is not None:
        return known
    kv = await ctx.store.get(PREFIX + name)
    if kv is None:
        return None
    return _terminating(orjson.loads(kv.value))
