"""A minimal OpenAPI v2 document in protobuf, for kubectl's fallback checks.

kubectl v1.32 reads OpenAPI v3 for everything that matters (explain,
apply's patch metadata, the ``fieldValidation`` check), but when a kind is
missing from the v3 documents (a typo'd kind, a CRD not yet created) its
field-validation verifier falls back to ``/openapi/v2``, which it only
accepts as gnostic protobuf (``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``).
Without it, ``kubectl apply`` of an unknown kind fails with "failed to
download openapi" instead of kube's ``no matches for kind``. This module
encodes, by hand (the wire format is small), a Swagger 2.0 document with
one PATCH operation per resource carrying ``x-kubernetes-group-version-kind``
and the ``fieldValidation``/``dryRun`` query parameters — no definitions.
Called by the apiserver for ``GET /openapi/v2``.
"""

from __future__ import annotations

import threading
from typing import Any

from kubevisor.api.kinds import Registry, ResourceType

CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


# ---------------------------------------------------------------------------
# Protobuf wire format (proto3: varints and length-delimited fields only)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _str(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode()) if text else b""


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + _varint(1) if value else b""


def _msg(number: int, *parts: bytes) -> bytes:
    return _bytes_field(number, b"".join(parts))


# ---------------------------------------------------------------------------
# gnostic openapi_v2 messages (field numbers from OpenAPIv2.proto)


def _named_any_yaml(number: int, name: str, yaml: str) -> bytes:
    # NamedAny{name=1, value=2 Any{yaml=2}}
    return _msg(number, _str(1, name), _msg(2, _str(2, yaml)))


def _query_parameter(name: str, typ: str, description: str) -> bytes:
    # ParametersItem{parameter=1 Parameter{non_body_parameter=2
    #   NonBodyParameter{query_parameter_sub_schema=3 QueryParameterSubSchema{
    #     in=2, description=3, name=4, type=6, unique_items=20}}}}
    sub = _str(2, "query") + _str(3, description) + _str(4, name) + _str(6, typ) + _bool(20, True)
    return _msg(8, _msg(1, _msg(2, _msg(3, sub))))


_PATCH_PARAMS = b"".join((
    _query_parameter("dryRun", "string", "When present, indicates that modifications should "
                     "not be persisted."),
    _query_parameter("fieldManager", "string", "fieldManager is a name associated with the "
                     "actor or entity that is making these changes."),
    _query_parameter("fieldValidation", "string", "fieldValidation instructs the server on how "
                     "to handle objects in the request (POST/PUT/PATCH) containing unknown or "
                     "duplicate fields."),
    _query_parameter("force", "boolean", "Force is going to \"force\" Apply requests."),
))


def _gvk_yaml(rt: ResourceType) -> str:
    return f'group: "{rt.group}"\nkind: {rt.kind}\nversion: {rt.version}\n'


def _path_item(rt: ResourceType) -> bytes:
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    scope = f"/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"/{rt.plural}"
    path = f"{prefix}{scope}/{{name}}"
    operation = b"".join((
        _str(3, f"partially update the specified {rt.kind}"),
        _str(5, f"patch{rt.kind}"),
        _PATCH_PARAMS,
        _named_any_yaml(13, "x-kubernetes-action", "patch\n"),
        _named_any_yaml(13, "x-kubernetes-group-version-kind", _gvk_yaml(rt)),
    ))
    # Paths.path=2 NamedPathItem{name=1, value=2 PathItem{patch=8 Operation}}
    return _msg(2, _str(1, path), _msg(2, _msg(8, operation)))


def _document(types: list[ResourceType]) -> bytes:
    info = _msg(2, _str(1, "Kubernetes"), _str(2, "v1.32.0"))
    paths = _msg(8, *(_path_item(rt) for rt in types if "patch" in rt.verbs))
    return _str(1, "2.0") + info + paths


_lock = threading.Lock()
_cached: tuple[tuple[Any, ...], bytes] | None = None


def openapi_v2_protobuf(registry: Registry) -> bytes:
    """The protobuf OpenAPI v2 document for the registry's served kinds
    (cached until the set of kinds changes)."""
    global _cached
    types = sorted((rt for rt in registry if rt.served),
                   key=lambda rt: (rt.group, rt.version, rt.plural))
    fingerprint = tuple((rt.group, rt.version, rt.kind, rt.plural, rt.namespaced, rt.verbs)
                        for rt in types)
    cached = _cached
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    raw = _document(types)
    with _lock:
        _cached = (fingerprint, raw)
    return raw
