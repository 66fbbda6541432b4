"""REST verbs on a resource collection and its objects: create, get, list,
update, delete and deletecollection, with kube-apiserver's semantics.

Called by the app with the parsed path and the resolved
:class:`ResourceType`; get/list (``listing``), patch, watch, Table and the
subresources live in their own modules and call back into the write helpers here
(:func:`write_update`, :func:`delete_object`). Store errors are translated
into Status errors where they enter.
"""

from __future__ import annotations

from typing import Any

import orjson

from kubevisor.api.kinds import ResourceType
from kubevisor.api.meta import now_rfc3339
from kubevisor.apiserver import (
    admission,
    csr,
    errors,
    managed,
    namespaces,
    objects,
    services,
    storage,
    strategy,
)
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, Response, decode_body, dump
from kubevisor.apiserver.listing import get_kv, list_kvs
from kubevisor.apiserver.routing import RequestInfo
from kubevisor.store import errors as store_errors

JSON = dict[str, Any]

_MAX_RETRIES = 16


# --- helpers ----------------------------------------------------------------


def clone(obj: JSON) -> JSON:
    """A deep copy of JSON-shaped data (an orjson round trip: far cheaper
    than copy.deepcopy)."""
    result: JSON = orjson.loads(orjson.dumps(obj))
    return result


def is_dry_run(req: Request) -> bool:
    value = req.query.get("dryRun")
    if value is None:
        return False
    if value != "All":
        raise errors.bad_request(f'Invalid dry run value "{value}". Supported: "All"')
    return True


def object_response(status: int, obj: JSON, out: Output, req: Request) -> Response:
    return Response(status, dump(obj, out), out.media)


async def check_namespace_open(ctx: Context, rt: ResourceType, name: str, namespace: str) -> None:
    """A namespaced create needs its namespace to exist and not be terminating."""
    if not rt.namespaced:
        return
    try:
        terminating = await namespaces.state(ctx, namespace)
    except store_errors.UnavailableError as exc:
        raise errors.service_unavailable(str(exc)) from exc
    if terminating is None:
        raise errors.not_found("namespaces", namespace)
    if terminating:
        raise errors.forbidden(
            rt.plural, name,
            f"unable to create new content in namespace {namespace} because it is being terminated",
            rt.group,
        )


# --- create -----------------------------------------------------------------


async def create(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType, out: Output) -> Response:
    if rt.namespaced and not info.namespace:
        raise errors.path_not_found()
    obj = objects.check_body(rt, decode_body(req))
    obj = await create_object(ctx, req, rt, obj, info.namespace)
    return object_response(201, obj, out, req)


async def create_object(ctx: Context, req: Request, rt: ResourceType, obj: JSON, namespace: str,
                        *, manage: bool = True) -> JSON:
    """Admit and store a new object; returns it with its resourceVersion."""
    objects.check_namespace(rt, obj, namespace)
    dry = is_dry_run(req)
    admission.check_unknown_fields(rt, obj, req)
    objects.prepare_create(rt, obj, now_rfc3339())
    strategy.prepare_for_create(rt, obj)
    csr.set_requester(rt, obj, req.user)
    admission.default_and_validate(rt, obj)
    if manage:
        managed.on_create(rt, obj, req)
    name = obj["metadata"]["name"]
    await check_namespace_open(ctx, rt, name, namespace)
    key = storage.key(rt, namespace, name)
    await services.before_create(ctx, rt, obj, dry=dry)
    if dry:
        if await get_kv(ctx, key) is not None:
            raise errors.already_exists(rt.plural, name, rt.group)
        return obj
    try:
        kv = await ctx.store.create(key, storage.encode(obj, rt))
    except store_errors.KeyExistsError as exc:
        raise errors.already_exists(rt.plural, name, rt.group) from exc
    except store_errors.UnavailableError as exc:
        raise errors.service_unavailable(str(exc)) from exc
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    await after_write(ctx, rt, obj, None)
    return obj


async def after_write(ctx: Context, rt: ResourceType, obj: JSON | None, old: JSON | None) -> None:
    """Side effects a write has at once in this process (CRDs change the registry)."""
    key = strategy.gk(rt)
    if key == strategy.CRD:
        from kubevisor.apiserver import crds

        crds.apply_to_registry(ctx, obj, old)
    elif key == strategy.NAMESPACE:
        name = (obj or old or {}).get("metadata", {}).get("name", "")
        namespaces.note(ctx, name, obj)
    else:
        await services.after_write(ctx, rt, obj, old)


# --- update -------------------------------------------------------------------


async def update(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType, out: Output,
                 *, status_only: bool = False) -> Response:
    obj = objects.check_body(rt, decode_body(req))
    objects.check_namespace(rt, obj, info.namespace)
    objects.check_url_name(obj, info.name)
    admission.check_unknown_fields(rt, obj, req)
    want_rv = obj["metadata"].get("resourceVersion") or ""
    key = storage.key(rt, info.namespace, info.name)

    def mutate(old: JSON | None) -> JSON:
        if old is None:
            return clone(obj)
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, info.name, rt.group)
        return clone(obj)

    result, created = await write_update(
        ctx, req, rt, key, mutate, status_only=status_only,
        create_namespace=info.namespace if strategy.allow_create_on_update(rt) and not status_only
        else None,
        name=info.name, conditional=bool(want_rv),
    )
    return object_response(201 if created else 200, result, out, req)


async def write_update(
    ctx: Context,
    req: Request,
    rt: ResourceType,
    key: str,
    mutate: Any,
    *,
    name: str,
    status_only: bool = False,
    create_namespace: str | None = None,
    conditional: bool = False,
    subresource: str = "",
    manage: bool = True,
) -> tuple[JSON, bool]:
    """Read-modify-write ``key``: ``mutate(old)`` returns the desired object
    (``old`` is None when absent, which creates when ``create_namespace`` is
    not None and is a 404 otherwise). Retries lost races unless
    ``conditional``. Returns (stored object, created)."""
    dry = is_dry_run(req)
    for _ in range(_MAX_RETRIES):
        kv = await get_kv(ctx, key)
        if kv is None:
            if create_namespace is None:
                raise errors.not_found(rt.plural, name, rt.group)
            new = mutate(None)
            if new["metadata"].get("resourceVersion"):
                raise errors.not_found(rt.plural, name, rt.group)
            try:
                return await create_object(ctx, req, rt, new, create_namespace,
                                           manage=manage), True
            except errors.ApiError as exc:
                if exc.reason == "AlreadyExists":
                    continue
                raise
        old = storage.fix_version(storage.decode(kv), rt)
        new = mutate(storage.fix_version(storage.decode(kv), rt))  # a fresh copy
        new = objects.prepare_update(rt, new, old, status_only=status_only)
        if not status_only and subresource != "finalize":
            strategy.prepare_for_update(rt, new, old)
        # spec.finalizers of a Namespace is defaulted on create only (its
        # defaulter would put "kubernetes" back after a finalize).
        ns_finalizers = _ns_finalizers(rt, new) if strategy.gk(rt) == strategy.NAMESPACE else None
        admission.default_and_validate(rt, new, old)
        if not status_only:
            objects.bump_generation(rt, new, old)
            await services.before_update(ctx, rt, new, old, dry=dry)
        if ns_finalizers is not None:
            if ns_finalizers:
                new.setdefault("spec", {})["finalizers"] = ns_finalizers
            else:
                (new.get("spec") or {}).pop("finalizers", None)
        if manage:
            managed.on_update(rt, new, old, req, subresource=subresource)
        if objects.same_object(new, old):
            return old, False
        meta = new["metadata"]
        # An update of an object being deleted removes it once no finalizer
        # is left, unless a graceful deletion is still pending (a pod in its
        # grace period: its node deletes it once the containers stopped; as
        # kube-apiserver's ShouldDeleteDuringUpdate).
        if meta.get("deletionTimestamp") and not meta.get("finalizers") \
                and not _ns_finalizers(rt, new) and not meta.get("deletionGracePeriodSeconds"):
            if dry:
                return new, False
            try:
                deleted = await ctx.store.delete(key, expected_mod_revision=kv.mod_revision)
            except (store_errors.ConflictError, store_errors.KeyNotFoundError) as exc:
                if conditional:
                    raise errors.conflict(rt.plural, name, rt.group) from exc
                continue
            meta["resourceVersion"] = str(deleted.mod_revision)
            await after_write(ctx, rt, None, old)
            return new, False
        if dry:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            return new, False
        try:
            stored = await ctx.store.update(key, storage.encode(new, rt, previous=kv),
                                            expected_mod_revision=kv.mod_revision)
        except (store_errors.ConflictError, store_errors.KeyNotFoundError) as exc:
            if conditional:
                raise errors.conflict(rt.plural, name, rt.group) from exc
            continue
        except store_errors.UnavailableError as exc:
            raise errors.service_unavailable(str(exc)) from exc
        meta["resourceVersion"] = str(stored.mod_revision)
        await after_write(ctx, rt, new, old)
        return new, False
    raise errors.conflict(rt.plural, name, rt.group)


def _ns_finalizers(rt: ResourceType, obj: JSON) -> list[str]:
    if strategy.gk(rt) != strategy.NAMESPACE:
        return []
    return list((obj.get("spec") or {}).get("finalizers") or [])


# --- delete -------------------------------------------------------------------


async def delete(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType, out: Output) -> Response:
    from kubevisor.apiserver.http import decode_bytes

    body = None
    if req.body.strip():
        body = decode_bytes(req.body, req.content_type or "application/json")
    opts = objects.delete_options(body, req.query)
    key = storage.key(rt, info.namespace, info.name)
    obj, gone = await delete_object(ctx, req, rt, key, info.name, opts)
    if gone and not strategy.returns_deleted_object(rt):
        return object_response(200, objects.status_success(rt, obj), out, req)
    return object_response(200, obj, out, req)


async def delete_object(
    ctx: Context, req: Request, rt: ResourceType, key: str, name: str, opts: JSON
) -> tuple[JSON, bool]:
    """Delete or start deleting; returns (object, removed from the store)."""
    dry = bool(opts.get("dryRun")) and "All" in (opts.get("dryRun") or [])
    if opts.get("dryRun") and not dry:
        raise errors.bad_request(f'Invalid dry run value "{opts["dryRun"]}". Supported: "All"')
    if strategy.gk(rt) == strategy.NAMESPACE and name in strategy.IMMORTAL_NAMESPACES:
        raise errors.forbidden(rt.plural, name, "this namespace may not be deleted", rt.group)
    for _ in range(_MAX_RETRIES):
        kv = await get_kv(ctx, key)
        if kv is None:
            raise errors.not_found(rt.plural, name, rt.group)
        obj = storage.fix_version(storage.decode(kv), rt)
        objects.check_preconditions(rt, opts, obj)
        meta = obj["metadata"]
        old_finalizers = list(meta.get("finalizers") or [])
        finalizers = objects.finalizers_for_delete(opts, old_finalizers)
        grace = strategy.graceful_delete_seconds(rt, obj, opts.get("gracePeriodSeconds"))
        if meta.get("deletionTimestamp") and grace > 0:
            grace = 0 if opts.get("gracePeriodSeconds") == 0 else grace
        pending = bool(finalizers) or grace > 0 or bool(_ns_finalizers(rt, obj))
        if pending:
            updated = storage.fix_version(storage.decode(kv), rt)
            now = now_rfc3339()
            shortened = grace > 0 and objects.shorten_grace(updated, now, grace)
            changed = (finalizers != old_finalizers or not meta.get("deletionTimestamp")
                       or shortened)
            if not changed:
                return obj, False
            objects.mark_deleted(updated, now, grace)
            if finalizers:
                updated["metadata"]["finalizers"] = finalizers
            else:
                updated["metadata"].pop("finalizers", None)
            if strategy.gk(rt) == strategy.NAMESPACE:
                updated.setdefault("status", {})["phase"] = "Terminating"
            if dry:
                return updated, False
            try:
                stored = await ctx.store.update(key, storage.encode(updated, rt, previous=kv),
                                                expected_mod_revision=kv.mod_revision)
            except (store_errors.ConflictError, store_errors.KeyNotFoundError):
                continue
            updated["metadata"]["resourceVersion"] = str(stored.mod_revision)
            await after_write(ctx, rt, updated, obj)
            return updated, False
        if dry:
            return obj, True
        if strategy.gk(rt) == strategy.CRD:
            from kubevisor.apiserver import crds

            await crds.delete_custom_objects(ctx, obj)
        try:
            deleted = await ctx.store.delete(key, expected_mod_revision=kv.mod_revision)
        except (store_errors.ConflictError, store_errors.KeyNotFoundError):
            continue
        except store_errors.UnavailableError as exc:
            raise errors.service_unavailable(str(exc)) from exc
        meta["resourceVersion"] = str(deleted.mod_revision)
        await after_write(ctx, rt, None, obj)
        return obj, True
    raise errors.conflict(rt.plural, name, rt.group)


async def delete_collection(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType,
                            out: Output) -> Response:
    from kubevisor.apiserver.http import decode_bytes

    body = None
    if req.body.strip():
        body = decode_bytes(req.body, req.content_type or "application/json")
    opts = objects.delete_options(body, req.query)
    kvs, decoded, _rev, _cont, _rem = await list_kvs(ctx, req, rt, info.namespace)
    objs = decoded if decoded is not None else [storage.decode(kv) for kv in kvs]
    items = []
    for obj in objs:
        meta = obj["metadata"]
        key = storage.key(rt, meta.get("namespace", ""), meta["name"])
        try:
            deleted, _ = await delete_object(ctx, req, rt, key, meta["name"], opts)
        except errors.ApiError as exc:
            if exc.code == 404:
                continue
            raise
        items.append(deleted)
    result = {"kind": rt.list_kind, "apiVersion": rt.group_version, "metadata": {}, "items": items}
    return object_response(200, result, out, req)
