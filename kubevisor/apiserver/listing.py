"""Read verbs: get and list (label/field selectors, ``limit``/``continue``
paging with an opaque token, ``resourceVersion``/``resourceVersionMatch``),
in JSON, YAML, Table or PartialObjectMetadata form.

Unfiltered JSON reads splice the resourceVersion into the stored bytes and
never parse them (see ``storage``). Called by the app; the selector helpers
are shared with ``watch`` and deletecollection.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from kubevisor.api import selectors
from kubevisor.api.formats import parse_int64
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors, storage, tables
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, Response, dump
from kubevisor.apiserver.routing import RequestInfo
from kubevisor.store import errors as store_errors
from kubevisor.store.base import KeyValue

JSON = dict[str, Any]


async def get_kv(ctx: Context, key: str) -> KeyValue | None:
    try:
        return await ctx.store.get(key)
    except store_errors.UnavailableError as exc:
        raise errors.service_unavailable(str(exc)) from exc


def selectors_of(rt: ResourceType, req: Request) -> tuple[selectors.LabelSelector, selectors.FieldSelector]:
    try:
        label = selectors.parse_label_selector(req.query.get("labelSelector", ""))
        field = selectors.parse_field_selector(req.query.get("fieldSelector", ""))
    except selectors.SelectorError as exc:
        raise errors.bad_request(str(exc)) from exc
    allowed = {"metadata.name", "metadata.namespace", *rt.selectable_fields}
    for f in field.fields():
        if f not in allowed:
            raise errors.bad_request(f'field label not supported: {f}')
    return label, field


def matcher(rt: ResourceType, label: selectors.LabelSelector, field: selectors.FieldSelector):  # type: ignore[no-untyped-def]
    """A predicate on decoded objects, or None when everything matches."""
    if label.empty and field.empty:
        return None
    fields = field.fields()

    def match(obj: JSON) -> bool:
        meta = obj.get("metadata") or {}
        if not label.empty and not label.matches(meta.get("labels")):
            return False
        if fields:
            values = {f: selectors.field_value(obj, f) for f in fields}
            if not field.matches(values):
                return False
        return True

    return match


def partial(obj: JSON) -> JSON:
    """The PartialObjectMetadata view of an object (metadata-only clients)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"]}


async def get(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType, out: Output) -> Response:
    kv = await get_kv(ctx, storage.key(rt, info.namespace, info.name))
    if kv is None:
        raise errors.not_found(rt.plural, info.name, rt.group)
    if out.table:
        obj = storage.fix_version(storage.decode(kv), rt)
        return tables.table_response(rt, [obj], req, out, list_meta={})
    if out.partial:
        return Response(200, dump(partial(storage.decode(kv))))
    data = storage.raw(kv)
    data = storage.served_as(data, rt)
    if out.media != "application/json":
        return Response(200, dump(orjson.loads(data), out), out.media)
    return Response(200, data)


def _encode_continue(rev: int, start: str, consumed: int) -> str:
    token = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": start, "n": consumed})
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str, int]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("bad version")
        return (parse_int64(str(data["rv"])), str(data["start"]),
                parse_int64(str(data.get("n", 0))))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise errors.bad_request(f"invalid continue token: {exc}") from exc


def _int_param(req: Request, name: str) -> int:
    raw = req.query.get(name, "")
    if not raw:
        return 0
    try:
        value = parse_int64(raw)
    except ValueError as exc:
        raise errors.bad_request(f"invalid {name} {raw!r}") from exc
    if value < 0:
        raise errors.bad_request(f"invalid {name} {raw!r}: must not be negative")
    return value


def list_revision(req: Request) -> tuple[int, int]:
    """(the store revision a list reads at, 0: now; the least revision a
    NotOlderThan read must reflect, 0: any), from resourceVersion and
    resourceVersionMatch."""
    rv = req.query.get("resourceVersion", "")
    match = req.query.get("resourceVersionMatch", "")
    if match and match not in ("Exact", "NotOlderThan"):
        raise errors.bad_request(f'invalid resourceVersionMatch "{match}"')
    if match and not rv:
        raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if not rv:
        return 0, 0
    try:
        value = parse_int64(rv)
    except ValueError as exc:
        raise errors.bad_request(f'invalid resource version "{rv}"') from exc
    if value < 0:
        raise errors.bad_request(f'invalid resource version "{rv}"')
    if match == "Exact":
        if value == 0:
            raise errors.bad_request("resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"")
        return value, 0
    return 0, value


async def list_kvs(
    ctx: Context, req: Request, rt: ResourceType, namespace: str
) -> tuple[list[KeyValue], list[JSON] | None, int, str, int | None]:
    """Read one page: (kvs, decoded objects when filtered else None,
    revision, continue token, remainingItemCount)."""
    label, field = selectors_of(rt, req)
    # A metadata.namespace selector narrows the key range like a URL namespace.
    ns_pin = field.value_of("metadata.namespace")
    if rt.namespaced and not namespace and ns_pin:
        namespace = ns_pin
    match = matcher(rt, label, field)
    limit = _int_param(req, "limit")
    prefix = storage.prefix(rt, namespace)
    token = req.query.get("continue", "")
    revision, at_least = list_revision(req)
    if at_least:
        current = await ctx.store.current_revision()
        if at_least > current:
            raise errors.ApiError(
                504, "Timeout", f"Too large resource version: {at_least}, current: {current}",
                {"causes": [{"reason": "ResourceVersionTooLarge",
                             "message": "Too large resource version"}],
                 "retryAfterSeconds": 1})
    start_key: str | None = None
    consumed = 0
    if token:
        revision, start, consumed = _decode_continue(token)
        start_key = prefix + start
    kvs: list[KeyValue] = []
    decoded: list[JSON] = []
    try:
        while True:
            batch = 0 if not limit else max(limit - len(kvs), 1 if match is None else 500)
            res = await ctx.store.range(prefix, revision=revision, start_key=start_key, limit=batch)
            revision = res.revision
            for kv in res.kvs:
                if match is not None:
                    obj = storage.fix_version(storage.decode(kv), rt)
                    if not match(obj):
                        start_key = kv.key
                        continue
                    decoded.append(obj)
                kvs.append(kv)
                start_key = kv.key
                if limit and len(kvs) >= limit:
                    break
            if limit and len(kvs) >= limit:
                more = res.more or kv is not res.kvs[-1]
                break
            if not res.more or not res.kvs:
                more = False
                break
            start_key = res.kvs[-1].key
    except store_errors.CompactedError as exc:
        if token:
            raise errors.expired(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter, or use the continue "
                "token in this response to retrieve the remainder of the results. Continuing with "
                "the provided token results in an inconsistent list - objects that were created, "
                "modified, or deleted between the time the first chunk was returned and now may "
                "show up in the list."
            ) from exc
        raise errors.expired(f"too old resource version: {revision} ({exc.compacted})") from exc
    except store_errors.FutureRevisionError as exc:
        raise errors.timeout(
            f"Too large resource version: {exc.requested}, current: {exc.current}") from exc
    except store_errors.UnavailableError as exc:
        raise errors.service_unavailable(str(exc)) from exc
    cont = ""
    remaining: int | None = None
    if limit and more and kvs:
        consumed += len(kvs)
        cont = _encode_continue(revision, kvs[-1].key[len(prefix):] + "\x00", consumed)
        if match is None:
            remaining = max(res.count - consumed, 0)
    return kvs, (decoded if match is not None else None), revision, cont, remaining


async def list_(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType, out: Output) -> Response:
    if req.query.get("timeoutSeconds"):
        try:
            float(req.query["timeoutSeconds"])
        except ValueError as exc:
            raise errors.bad_request(
                f"invalid timeoutSeconds {req.query['timeoutSeconds']!r}") from exc
    kvs, decoded, revision, cont, remaining = await list_kvs(ctx, req, rt, info.namespace)
    list_meta: JSON = {"resourceVersion": str(revision)}
    if cont:
        list_meta["continue"] = cont
    if remaining is not None:
        list_meta["remainingItemCount"] = remaining
    if out.table:
        objs = decoded if decoded is not None else [storage.fix_version(storage.decode(kv), rt) for kv in kvs]
        return tables.table_response(rt, objs, req, out, list_meta=list_meta)
    if out.partial:
        objs = decoded if decoded is not None else [storage.decode(kv) for kv in kvs]
        return Response(200, dump({"kind": "PartialObjectMetadataList",
                                   "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
                                   "items": [partial(o) for o in objs]}))
    head = orjson.dumps({"kind": rt.list_kind, "apiVersion": rt.group_version,
                         "metadata": list_meta})[:-1]
    if decoded is not None:
        items = [orjson.dumps(o) for o in decoded]
    else:
        items = [storage.raw(kv) for kv in kvs]
    if rt.custom:
        items = [storage.served_as(i, rt) for i in items]
    body = head + b',"items":[' + b",".join(items) + b"]}"
    if out.media != "application/json":
        return Response(200, dump(orjson.loads(body), out), out.media)
    return Response(200, body)
