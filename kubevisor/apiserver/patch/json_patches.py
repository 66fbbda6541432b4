"""RFC 6902 JSON patch (``application/json-patch+json``) and RFC 7386 JSON
merge patch (``application/merge-patch+json``) on JSON-shaped dicts.

Called by the apiserver's PATCH handler with the stored object and the raw
request body. Failures are raised as this package's errors with the codes
kube-apiserver uses: a body that is not a patch document is 400 BadRequest;
a JSON patch that does not apply (failed ``test``, missing path, unknown op)
is 422 with kube-apiserver's generic message; more than 10,000 operations
is 413. The pinned ``jsonpatch`` library does the RFC 6902 work.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from kubevisor.apiserver.patch.errors import (
    BadPatchError,
    PatchNotApplicableError,
    TooManyOperationsError,
    depth_guarded,
)

MAX_JSON_PATCH_OPERATIONS = 10000

JSON = dict[str, Any]


def decode(body: bytes | str | Any, what: str = "patch") -> Any:
    """Parse a request body; already-parsed values pass through."""
    if isinstance(body, bytes | bytearray | memoryview | str):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadPatchError(f"error decoding {what}: {exc}") from exc
    return body


@depth_guarded
def json_patch(obj: JSON, patch: bytes | str | list[Any]) -> JSON:
    """Apply an RFC 6902 patch to a copy of ``obj`` and return the copy."""
    ops = decode(patch)
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise BadPatchError(
            "json: cannot unmarshal "
            + ("object" if isinstance(ops, dict) else type(ops).__name__)
            + " into Go value of type jsonpatch.Patch"
        )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise TooManyOperationsError(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}"
        )
    try:
        result = jsonpatch.JsonPatch(ops).apply(obj, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise PatchNotApplicableError(str(exc)) from exc
    except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
        # jsonpatch lets some malformed operations escape as Python errors.
        raise PatchNotApplicableError(f"invalid JSON patch operation: {exc}") from exc
    if not isinstance(result, dict):
        raise BadPatchError("the patched document is not a JSON object")
    return result


@depth_guarded
def merge_patch(obj: JSON, patch: bytes | str | JSON) -> JSON:
    """Apply an RFC 7386 merge patch to a copy of ``obj`` and return the copy."""
    doc = decode(patch)
    if not isinstance(doc, dict):
        raise BadPatchError(
            "json: cannot unmarshal "
            + type(doc).__name__.replace("list", "array")
            + " into Go value of type map[string]interface {}"
        )
    return merge_values(obj, doc)


def merge_values(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch) without mutating either argument."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = merge_values(out.get(key), value)
        else:
            out[key] = copy.deepcopy(value)
    return out
