"""CustomResourceDefinitions become served kinds: the registry follows the
stored CRDs.

On start :func:`load` adds every stored CRD's kinds; :func:`sync_loop`
follows later changes from a store watch (so every apiserver sharing a store
converges); a CRD write through this server also applies at once
(:func:`apply_to_registry`, called by the resource handlers), so the new
kind is served as soon as the create returns. Deleting a CRD deletes its
custom objects first (:func:`delete_custom_objects`). Called by the app and
the resource handlers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from kubevisor.api import crd as api_crd
from kubevisor.apiserver import storage
from kubevisor.apiserver.context import Context
from kubevisor.store import errors as store_errors

JSON = dict[str, Any]

log = logging.getLogger(__name__)

CRD_PREFIX = "/registry/apiextensions.k8s.io/customresourcedefinitions/"


def _types_of(crd: JSON | None) -> list[Any]:
    if not crd:
        return []
    try:
        return api_crd.resource_types(crd)
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring CRD %s that does not convert", (crd.get("metadata") or {}).get("name"))
        return []


def apply_to_registry(ctx: Context, new: JSON | None, old: JSON | None) -> None:
    """Replace ``old``'s kinds by ``new``'s (either may be None)."""
    before = {(rt.group, rt.version, rt.plural): rt for rt in _types_of(old)}
    after = {(rt.group, rt.version, rt.plural): rt for rt in _types_of(new)}
    changed = False
    for key in before.keys() - after.keys():
        ctx.registry.remove(*key)
        changed = True
    for key, rt in after.items():
        if ctx.registry.by_resource(*key) != rt:
            ctx.registry.add(rt)
            changed = True
    if changed:
        ctx.registry_changed()


async def load(ctx: Context) -> int:
    """Add every stored CRD's kinds; returns the revision read at."""
    res = await ctx.store.range(CRD_PREFIX)
    for kv in res.kvs:
        apply_to_registry(ctx, orjson.loads(kv.value), None)
    return res.revision


async def sync_loop(ctx: Context, revision: int) -> None:
    """Follow CRD changes made by any apiserver sharing the store."""
    while True:
        watcher = ctx.store.watch(CRD_PREFIX, after_revision=revision)
        try:
            async for events in watcher:
                for ev in events:
                    revision = ev.revision
                    old = orjson.loads(ev.prev.value) if ev.prev is not None else None
                    new = orjson.loads(ev.kv.value) if ev.type == "PUT" else None
                    apply_to_registry(ctx, new, old)
            return
        except store_errors.CompactedError:
            revision = await load(ctx)
        except store_errors.StoreError:
            log.warning("CRD watch ended; restarting", exc_info=True)
            await asyncio.sleep(1.0)
        finally:
            await watcher.close()


async def delete_custom_objects(ctx: Context, crd: JSON) -> None:
    """Delete every object of the CRD's kind (all versions share one prefix)."""
    types = _types_of(crd)
    if not types:
        return
    prefix = storage.type_prefix(types[0])
    while True:
        res = await ctx.store.range(prefix, limit=500)
        for kv in res.kvs:
            try:
                await ctx.store.delete(kv.key)
            except store_errors.KeyNotFoundError:
                pass
        if not res.more:
            return
