"""Upstream Kubernetes schemas, as kube-apiserver serves them in OpenAPI v3.

The built-in kinds' schemas are not kept in this tree: they are read at
run time from the pinned PyPI package ``kubernetes-validate`` (JSON Schema
form, ``$defs``, nullable type lists) and converted once, lazily, into
OpenAPI v3 component schemas shaped like kube-apiserver's ``/openapi/v3``
documents: a single ``type``, refs as ``#/components/schemas/<name>``, a
``$ref`` with sibling keywords wrapped in ``allOf``, IntOrString and
Quantity as ``oneOf``. Callers: ``api.openapi`` (documents, explain),
``api.validation`` (admission) and the apiserver (patch merge keys).
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

import orjson

from kubevisor.api.errors import SchemaError
from kubevisor.api.kinds import JSON, ResourceType

# The Kubernetes minor whose schemas we serve (kubectl v1.32 is the client).
SCHEMA_VERSION = "v1.32.0"
REF_PREFIX = "#/components/schemas/"
_SOURCE_PREFIX = "#/$defs/"

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# Types whose OpenAPI v3 form kube-apiserver writes by hand (OpenAPIV3OneOfTypes).
_SPECIAL: dict[str, JSON] = {
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in "
        "JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  "
        "This allows you to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides "
        "convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and "
        "AsInt64() accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= "
        "<signedNumber><suffix>\n```\n\nExamples: 100m, 1.5, 2Gi, 128974848.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
}



def _source_path() -> Any:
    root = importlib.resources.files("kubernetes_validate")
    return root / "kubernetes-json-schema" / f"{SCHEMA_VERSION}-local" / "_definitions.json"


def _convert(node: Any, *, in_properties: bool = False) -> Any:
    """One JSON Schema node (of the upstream ``$defs``) in OpenAPI v3 form."""
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:
        return {name: _convert(sub) for name, sub in node.items()}
    out: JSON = {}
    ref = node.get("$ref")
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            out["type"] = types[0] if len(types) == 1 else types
        elif key == "properties":
            out["properties"] = _convert(value, in_properties=True)
        elif key in ("x-kubernetes-group-version-kind", "x-kubernetes-unions", "enum",
                     "required", "x-kubernetes-list-map-keys"):
            out[key] = value
        else:
            out[key] = _convert(value)
    if ref is not None:
        target = REF_PREFIX + ref.removeprefix(_SOURCE_PREFIX)
        if out:
            out = {"allOf": [{"$ref": target}], **out}
        else:
            out = {"$ref": target}
    return out


def _strip_type_meta_enums(schema: JSON) -> None:
    # kubernetes-validate pins apiVersion/kind with an enum; kube-apiserver does not.
    for name in ("apiVersion", "kind"):
        prop = schema.get("properties", {}).get(name)
        if isinstance(prop, dict):
            prop.pop("enum", None)


@functools.cache
def component_schemas() -> dict[str, JSON]:
    """Every upstream definition as an OpenAPI v3 component schema, by name
    (e.g. ``io.k8s.api.core.v1.Pod``). Loaded and converted once; callers
    must not mutate the result."""
    raw = orjson.loads(_source_path().read_bytes())["$defs"]
    out: dict[str, JSON] = {}
    for name, schema in raw.items():
        if name in _SPECIAL:
            out[name] = dict(_SPECIAL[name])
            continue
        converted = _convert(schema)
        _strip_type_meta_enums(converted)
        out[name] = converted
    return out


def component(name: str) -> JSON:
    """One component schema by name; SchemaError if unknown."""
    try:
        return component_schemas()[name]
    except KeyError as exc:
        raise SchemaError(f"no schema named {name!r}") from exc


def ref_name(ref: str) -> str:
    """``#/components/schemas/X`` -> ``X``."""
    return ref.removeprefix(REF_PREFIX)


def resolve(node: JSON) -> JSON:
    """Follow a node's ``$ref`` or single-``allOf`` ref to the named schema;
    a node without a ref is returned as is."""
    ref = node.get("$ref")
    if ref is None:
        all_of = node.get("allOf")
        if all_of and len(all_of) == 1 and "$ref" in all_of[0]:
            ref = all_of[0]["$ref"]
    if ref is None:
        return node
    return component(ref_name(ref))


def schema_of(rt: ResourceType) -> JSON:
    """The root schema of a kind: for built-ins the component schema named
    by ``rt.schema_name``; for custom resources the CRD's openAPIV3Schema
    (``rt.schema``); an open object schema if a kind declares neither."""
    if rt.schema_name is not None:
        return component(rt.schema_name)
    if rt.schema is not None:
        return rt.schema
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def refs_in(schema: Any) -> set[str]:
    """Names of all component schemas a schema refers to, transitively."""
    seen: set[str] = set()
    stack = [schema]
    schemas = component_schemas()
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF_PREFIX):
                name = ref_name(ref)
                if name not in seen and name in schemas:
                    seen.add(name)
                    stack.append(schemas[name])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return seen
