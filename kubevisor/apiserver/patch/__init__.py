"""Patch and apply for the apiserver: pure functions on JSON-shaped dicts.

The apiserver's PATCH/PUT/POST handlers call these; nothing here does I/O.

- :func:`json_patch` — RFC 6902 (``application/json-patch+json``)
- :func:`merge_patch` — RFC 7386 (``application/merge-patch+json``)
- :func:`strategic_merge_patch` — ``application/strategic-merge-patch+json``
  (built-in kinds only: custom resources get 415 from the apiserver)
- :func:`apply` — server-side apply (``application/apply-patch+yaml``)
- :func:`update_managed_fields` — managedFields for create/update/patch

Schemas are passed as plain data (root ``schema`` and ``defs``), see
:mod:`.schema_walk`. Errors are in :mod:`.errors`, each renders the Status
kube-apiserver would send.
"""

from kubevisor.apiserver.patch.errors import (
    BadPatchError,
    Conflict,
    ConflictError,
    InvalidApplyError,
    PatchError,
    PatchNotApplicableError,
    TooManyOperationsError,
    UnsupportedPatchTypeError,
)
from kubevisor.apiserver.patch.json_patches import json_patch, merge_patch
from kubevisor.apiserver.patch.managed import manager_or_user_agent, update_managed_fields
from kubevisor.apiserver.patch.media import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    check_patch_type,
    decode_apply,
    patch_object,
    patch_types,
)
from kubevisor.apiserver.patch.ssa import LAST_APPLIED, apply
from kubevisor.apiserver.patch.strategic import strategic_merge_patch

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "LAST_APPLIED",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "BadPatchError",
    "Conflict",
    "ConflictError",
    "InvalidApplyError",
    "PatchError",
    "PatchNotApplicableError",
    "TooManyOperationsError",
    "UnsupportedPatchTypeError",
    "apply",
    "check_patch_type",
    "decode_apply",
    "json_patch",
    "manager_or_user_agent",
    "merge_patch",
    "patch_object",
    "patch_types",
    "strategic_merge_patch",
    "update_managed_fields",
]
