"""managedFields bookkeeping on create and update, delegated to the patch
package's field manager (``patch.update_managed_fields``), and the schema
arguments the patch functions need for a kind.

The resource handlers call :func:`on_create` and :func:`on_update` with the
request (for ``fieldManager`` and the user agent, kubectl's default
manager name) right before a write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from kubevisor.api import schemas
from kubevisor.api.kinds import ResourceType
from kubevisor.api.meta import now_rfc3339
from kubevisor.apiserver import errors
from kubevisor.apiserver import patch as patchlib
from kubevisor.apiserver.http import Request

JSON = dict[str, Any]


def manager_name(req: Request) -> str:
    """``fieldManager`` or, as kube-apiserver does, the user agent's program name."""
    name = req.query.get("fieldManager", "")
    if len(name) > 128:
        raise errors.invalid("PatchOptions", "", [errors.field_cause(
            "fieldManager", "FieldValueTooLong", "Too long: may not be more than 128 bytes")])
    return patchlib.manager_or_user_agent(name or None, req.headers.get("user-agent"))


def schema_args(rt: ResourceType) -> tuple[JSON | None, Mapping[str, JSON] | None]:
    """(root schema, component definitions) of a kind for the patch functions."""
    if rt.custom or rt.schema_name is None:
        return schemas.schema_of(rt), None
    return schemas.component(rt.schema_name), schemas.component_schemas()


def reset_fields(rt: ResourceType, subresource: str) -> tuple[str, ...] | None:
    if subresource == "status":
        return None
    if subresource:
        return ()
    return ("status",) if rt.has_status else ()


def _set(obj: JSON, managed: list[JSON]) -> None:
    if managed:
        obj["metadata"]["managedFields"] = managed
    else:
        obj["metadata"].pop("managedFields", None)


# managedFields of creates by (kind, manager, shape): a create's field set
# depends on the object's shape (map keys, list contents), not on the scalar
# values inside maps, so objects of one shape share it; only the time differs.
# The key is the metadata's shape plus the rest of the object as is.
_CREATE_CACHE: dict[tuple[str, str, bytes], list[JSON]] = {}
_CREATE_CACHE_MAX = 512


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return value
    return type(value).__name__


def on_create(rt: ResourceType, obj: JSON, req: Request) -> None:
    manager = manager_name(req)
    now = now_rfc3339()
    meta = obj["metadata"]
    key = None
    if "managedFields" not in meta:
        rest = {k: v for k, v in obj.items() if k != "metadata"}
        key = (rt.group_version + "/" + rt.kind, manager,
               orjson.dumps(_shape(meta)) + orjson.dumps(rest))
        hit = _CREATE_CACHE.get(key)
        if hit is not None:
            _set(obj, [{**entry, "time": now} if "time" in entry else dict(entry)
                       for entry in hit])
            return
    schema, defs = schema_args(rt)
    try:
        managed = patchlib.update_managed_fields(
            None, obj, manager=manager, operation="Update",
            api_version=rt.group_version, now=now, schema=schema, defs=defs,
            reset_fields=reset_fields(rt, ""))
    except patchlib.PatchError:
        managed = []
    if key is not None:
        if len(_CREATE_CACHE) >= _CREATE_CACHE_MAX:
            _CREATE_CACHE.pop(next(iter(_CREATE_CACHE)))
        _CREATE_CACHE[key] = managed
    _set(obj, managed)


def on_update(rt: ResourceType, new: JSON, old: JSON, req: Request, *, subresource: str = "") -> None:
    schema, defs = schema_args(rt)
    managed = patchlib.update_managed_fields(
        old, new, manager=manager_name(req), operation="Update",
        api_version=rt.group_version, subresource=subresource, now=now_rfc3339(),
        schema=schema, defs=defs, reset_fields=reset_fields(rt, subresource))
    _set(new, managed)
