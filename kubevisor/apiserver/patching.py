"""The PATCH verb: picks the patch function by Content-Type and runs it
inside the read-modify-write loop of an update.

JSON patch, merge patch and strategic merge patch (built-in kinds only:
custom resources get 415 as from kube-apiserver), and server-side apply
(``application/apply-patch+yaml``), all from the ``patch`` package. A
``metadata.resourceVersion`` in the patched object acts as a precondition
(409 Conflict when stale). Called by the app for PATCH on an object, its
``status`` and (through ``subresources``) its ``scale``.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api import schemas
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors, objects, resources, storage
from kubevisor.apiserver import patch as patchlib
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, Response
from kubevisor.apiserver.routing import RequestInfo

JSON = dict[str, Any]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

_BUILTIN_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC, APPLY]
_CUSTOM_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY]


def patch_type(req: Request, rt: ResourceType) -> str:
    ctype = req.content_type
    allowed = _CUSTOM_TYPES if rt.custom else _BUILTIN_TYPES
    if ctype not in allowed:
        raise errors.unsupported_media_type(ctype, allowed)
    return ctype


def apply_patch(ctype: str, current: JSON, body: bytes, *, schema_name: str | None,
                schema: JSON | None) -> JSON:
    """``current`` patched by ``body`` (json, merge or strategic)."""
    try:
        if ctype == JSON_PATCH:
            return patchlib.json_patch(current, body)
        if ctype == MERGE_PATCH:
            return patchlib.merge_patch(current, body)
        from kubevisor.apiserver.patch.strategic import strategic_merge_patch

        root = schemas.component(schema_name) if schema_name else schema
        return strategic_merge_patch(current, body, schema=root,
                                     defs=schemas.component_schemas())
    except patchlib.PatchError as exc:
        raise _translate(exc) from exc


def _translate(exc: patchlib.PatchError) -> errors.ApiError:
    status = exc.status()
    return errors.ApiError(exc.code, exc.reason, status.get("message", exc.message),
                           status.get("details"))


async def patch(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType, out: Output,
                *, status_only: bool = False) -> Response:
    ctype = patch_type(req, rt)
    if not req.body.strip():
        raise errors.bad_request("the request body is empty")
    key = storage.key(rt, info.namespace, info.name)
    if ctype == APPLY:
        from kubevisor.apiserver import applying

        return await applying.apply(ctx, req, info, rt, out, key, status_only=status_only)
    conditional = False

    def mutate(old: JSON | None) -> JSON:
        nonlocal conditional
        assert old is not None
        rv = old["metadata"]["resourceVersion"]
        new = apply_patch(ctype, old, req.body, schema_name=rt.schema_name,
                          schema=rt.schema if rt.custom else None)
        new = objects.check_body(rt, new)
        meta = new["metadata"]
        want = meta.get("resourceVersion")
        if want and want != rv:
            raise errors.conflict(rt.plural, info.name, rt.group)
        conditional = conditional or bool(want)
        if meta.get("name") != info.name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({info.name})")
        objects.check_namespace(rt, new, info.namespace)
        from kubevisor.apiserver import admission

        admission.check_unknown_fields(rt, new, req)
        return new

    result, _ = await resources.write_update(
        ctx, req, rt, key, mutate, name=info.name, status_only=status_only,
        subresource="status" if status_only else "",
    )
    return resources.object_response(200, result, out, req)
