"""PATCH media types and one entry point per request body.

The apiserver's PATCH handler calls :func:`patch_types` to know what a
resource accepts, :func:`patch_object` for the three patch formats and
:func:`decode_apply` to read an apply body (YAML or JSON) before
:func:`kubevisor.apiserver.patch.ssa.apply`. An unaccepted content type
raises :class:`UnsupportedPatchTypeError` (415) worded as kube-apiserver's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from kubevisor.apiserver.patch.errors import BadPatchError, UnsupportedPatchTypeError, depth_guarded
from kubevisor.apiserver.patch.json_patches import json_patch, merge_patch
from kubevisor.apiserver.patch.strategic import strategic_merge_patch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

BUILTIN_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
CUSTOM_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)


def patch_types(*, custom: bool) -> tuple[str, ...]:
    """The PATCH content types a resource accepts, in kube-apiserver's order."""
    return CUSTOM_PATCH_TYPES if custom else BUILTIN_PATCH_TYPES


def media_type(content_type: str | None) -> str:
    """``application/merge-patch+json; charset=utf-8`` → ``application/merge-patch+json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_patch_type(content_type: str | None, *, custom: bool) -> str:
    """The bare media type, or :class:`UnsupportedPatchTypeError` if not accepted."""
    mt = media_type(content_type)
    accepted = patch_types(custom=custom)
    if mt not in accepted:
        raise UnsupportedPatchTypeError(list(accepted))
    return mt


def patch_object(
    live: dict[str, Any],
    body: bytes | str,
    content_type: str | None,
    *,
    schema: dict[str, Any] | None,
    defs: Mapping[str, dict[str, Any]] | None,
    custom: bool,
) -> dict[str, Any]:
    """``live`` patched by a JSON, merge or strategic merge patch body."""
    mt = check_patch_type(content_type, custom=custom)
    if mt == JSON_PATCH:
        return json_patch(live, body)
    if mt == MERGE_PATCH:
        return merge_patch(live, body)
    if mt == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(live, body, schema=schema, defs=defs)  # type: ignore[arg-type]
    raise AssertionError("apply bodies go to decode_apply() and apply()")


@depth_guarded
def decode_apply(body: bytes | str) -> dict[str, Any]:
    """An apply configuration from a YAML (or JSON) body."""
    try:
        doc = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise BadPatchError(f"error decoding YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadPatchError("error decoding YAML: the apply configuration must be an object")
    return doc
