"""Server-side apply (``PATCH`` with ``application/apply-patch+yaml``).

The configuration is merged into the live object by the patch package's
:func:`apply` as ``fieldManager`` (required), which also computes
managedFields and raises 409 conflicts with ``FieldManagerConflict``
causes unless ``force=true``. A missing object is created from the
configuration. Called by ``patching.patch``.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api.kinds import ResourceType
from kubevisor.api.meta import now_rfc3339
from kubevisor.apiserver import admission, errors, managed, objects, resources
from kubevisor.apiserver import patch as patchlib
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, Response, decode_bytes
from kubevisor.apiserver.routing import RequestInfo

JSON = dict[str, Any]


async def apply(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType, out: Output,
                key: str, *, status_only: bool = False) -> Response:
    manager = req.query.get("fieldManager", "")
    if not manager:
        raise errors.invalid("PatchOptions", "", [errors.field_cause(
            "fieldManager", "FieldValueRequired", "Required value: is required for apply patch")],
            "meta.k8s.io")
    manager = managed.manager_name(req)
    force = req.flag("force")
    # Our YAML decoding first: it refuses alias bombs and what JSON cannot carry.
    decode_bytes(req.body, "application/yaml")
    config = patchlib.decode_apply(req.body)
    schema, defs = managed.schema_args(rt)
    subresource = "status" if status_only else ""

    def run(live: JSON | None) -> JSON:
        new = patchlib.apply(live, config, manager=manager, force=force, schema=schema, defs=defs,
                             now=now_rfc3339(), api_version=rt.group_version,
                             subresource=subresource,
                             reset_fields=managed.reset_fields(rt, subresource))
        new = objects.check_body(rt, new)
        meta = new["metadata"]
        if meta.get("name") and meta["name"] != info.name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({info.name})")
        meta["name"] = info.name
        objects.check_namespace(rt, new, info.namespace)
        admission.check_unknown_fields(rt, new, req)
        return new

    def mutate(old: JSON | None) -> JSON:
        if old is None:
            if status_only:
                raise errors.not_found(rt.plural, info.name, rt.group)
            return run(None)
        return run(old)

    result, created = await resources.write_update(
        ctx, req, rt, key, mutate, name=info.name, status_only=status_only,
        create_namespace=None if status_only else info.namespace, subresource=subresource,
        manage=False,
    )
    return resources.object_response(201 if created else 200, result, out, req)
