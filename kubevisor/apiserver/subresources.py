"""The ``scale`` subresource (autoscaling/v1 Scale view of an object's
replicas) and ``namespaces/<name>/finalize``.

Scale: GET renders the Scale; PUT and PATCH change only the replicas field
the kind's :class:`ScaleSubresource` names, with the Scale's
resourceVersion as a precondition. Finalize: PUT replaces only a
Namespace's ``spec.finalizers``; a terminating namespace whose finalizers
are all gone is removed. Called by the app.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api import selectors
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors, listing, objects, patching, resources, storage
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, Response, decode_body
from kubevisor.apiserver.routing import RequestInfo

JSON = dict[str, Any]

SCALE_SCHEMA = "io.k8s.api.autoscaling.v1.Scale"


def _get_path(obj: JSON, path: str) -> Any:
    cur: Any = obj
    for part in path.lstrip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _set_path(obj: JSON, path: str, value: Any) -> None:
    parts = path.lstrip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def to_scale(rt: ResourceType, obj: JSON) -> JSON:
    assert rt.scale is not None
    meta = obj["metadata"]
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                       "creationTimestamp") if k in meta}
    status: JSON = {"replicas": int(_get_path(obj, rt.scale.status_replicas_path) or 0)}
    if rt.scale.label_selector_path:
        sel = _get_path(obj, rt.scale.label_selector_path)
        if isinstance(sel, dict):
            try:
                sel = str(selectors.label_selector_from_spec(sel))
            except selectors.SelectorError:
                sel = None
        if sel:
            status["selector"] = sel
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
            "spec": {"replicas": int(_get_path(obj, rt.scale.spec_replicas_path) or 0)},
            "status": status}


def _replicas(scale: JSON, name: str) -> int:
    value = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.invalid("Scale", name, [errors.field_cause(
            "spec.replicas", "FieldValueInvalid",
            f"Invalid value: {value}: must be greater than or equal to 0")], "autoscaling")
    return value


async def scale(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType,
                out: Output) -> Response:
    if rt.scale is None:
        raise errors.path_not_found()
    key = storage.key(rt, info.namespace, info.name)
    if req.method == "GET":
        kv = await listing.get_kv(ctx, key)
        if kv is None:
            raise errors.not_found(rt.plural, info.name, rt.group)
        return resources.object_response(200, to_scale(rt, storage.decode(kv)), out, req)
    if req.method not in ("PUT", "PATCH"):
        raise errors.method_not_allowed()
    assert rt.scale is not None
    spec_path = rt.scale.spec_replicas_path
    body: JSON | None = None
    if req.method == "PUT":
        body = objects.check_body(rt, decode_body(req), expect_kind="Scale")
        objects.check_url_name(body, info.name)
    else:
        ctype = patching.patch_type(req, rt)
        if ctype == patching.APPLY:
            raise errors.unsupported_media_type(ctype, [patching.JSON_PATCH, patching.MERGE_PATCH,
                                                        patching.STRATEGIC])

    def mutate(old: JSON | None) -> JSON:
        assert old is not None
        current = to_scale(rt, old)
        if body is not None:
            wanted = body
        else:
            wanted = patching.apply_patch(req.content_type, current, req.body,
                                          schema_name=SCALE_SCHEMA, schema=None)
        rv = (wanted.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, info.name, rt.group)
        _set_path(old, spec_path, _replicas(wanted, info.name))
        return old

    result, _ = await resources.write_update(ctx, req, rt, key, mutate, name=info.name,
                                             subresource="scale")
    return resources.object_response(200, to_scale(rt, result), out, req)


async def finalize(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType,
                   out: Output) -> Response:
    if req.method != "PUT":
        raise errors.method_not_allowed()
    body = objects.check_body(rt, decode_body(req))
    objects.check_url_name(body, info.name)
    finalizers = (body.get("spec") or {}).get("finalizers") or []
    key = storage.key(rt, "", info.name)
    want_rv = body["metadata"].get("resourceVersion")

    def mutate(old: JSON | None) -> JSON:
        assert old is not None
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, info.name, rt.group)
        spec = dict(old.get("spec") or {})
        if finalizers:
            spec["finalizers"] = list(finalizers)
        else:
            spec.pop("finalizers", None)
        old["spec"] = spec
        return old

    result, _ = await resources.write_update(ctx, req, rt, key, mutate, name=info.name,
                                             subresource="finalize")
    return resources.object_response(200, result, out, req)
