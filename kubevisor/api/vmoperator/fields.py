"""A small vocabulary for writing the VM Operator schemas as data.

Each function returns one OpenAPI v3 schema node shaped like what
controller-gen writes into a CRD (``type``, ``description``, ``enum``,
``default``, list-map markers, int-or-string quantities), so the results
can be served, validated and explained exactly as a CRD's
openAPIV3Schema is. ``without`` and ``replace`` derive an older API version
from a newer one by dropping or swapping fields. Called by the per-kind
schema modules of this package.
"""

from __future__ import annotations

import copy
from typing import Any

from kubevisor.api.kinds import JSON

# The pattern controller-gen puts on resource.Quantity fields.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _node(base: JSON, desc: str, extra: dict[str, Any]) -> JSON:
    if desc:
        base["description"] = desc
    base.update({k: v for k, v in extra.items() if v is not None})
    return base


def obj(desc: str = "", /, *, required: tuple[str, ...] = (), **props: JSON) -> JSON:
    """An object with the given properties (keyword names are field names;
    pass ``**{"class": ...}`` for names that are Python keywords)."""
    node: JSON = {"type": "object"}
    if desc:
        node["description"] = desc
    if props:
        node["properties"] = props
    if required:
        node["required"] = list(required)
    return node


def arr(items: JSON, desc: str = "", /, *, map_keys: tuple[str, ...] = (),
        list_type: str | None = None, max_items: int | None = None) -> JSON:
    """An array; ``map_keys`` makes it a list-map keyed by those fields."""
    node: JSON = {"type": "array", "items": items}
    if map_keys:
        node["x-kubernetes-list-map-keys"] = list(map_keys)
        node["x-kubernetes-list-type"] = "map"
    elif list_type:
        node["x-kubernetes-list-type"] = list_type
    return _node(node, desc, {"maxItems": max_items})


def string(desc: str = "", /, *, enum: tuple[str, ...] | None = None, default: str | None = None,
           pattern: str | None = None, fmt: str | None = None,
           min_length: int | None = None, max_length: int | None = None) -> JSON:
    return _node({"type": "string"}, desc, {
        "enum": list(enum) if enum else None, "default": default, "pattern": pattern,
        "format": fmt, "minLength": min_length, "maxLength": max_length})


def integer(desc: str = "", /, *, fmt: str | None = "int32", minimum: int | None = None,
            maximum: int | None = None, default: int | None = None) -> JSON:
    return _node({"type": "integer"}, desc, {
        "format": fmt, "minimum": minimum, "maximum": maximum, "default": default})


def boolean(desc: str = "", /, *, default: bool | None = None) -> JSON:
    return _node({"type": "boolean"}, desc, {"default": default})


def quantity(desc: str = "", /) -> JSON:
    """A resource.Quantity (``2Gi``, ``500m``, or a plain integer)."""
    return _node({"anyOf": [{"type": "integer"}, {"type": "string"}],
                  "x-kubernetes-int-or-string": True}, desc, {"pattern": QUANTITY_PATTERN})


def int_or_string(desc: str = "", /) -> JSON:
    return _node({"anyOf": [{"type": "integer"}, {"type": "string"}],
                  "x-kubernetes-int-or-string": True}, desc, {})


def free(desc: str = "", /, *, typ: str | None = None) -> JSON:
    """Anything goes below this node (cloud-config runcmd, raw content)."""
    node: JSON = {"x-kubernetes-preserve-unknown-fields": True}
    if typ:
        node["type"] = typ
    return _node(node, desc, {})


def string_map(desc: str = "", /) -> JSON:
    return _node({"type": "object", "additionalProperties": {"type": "string"}}, desc, {})


def time(desc: str = "", /) -> JSON:
    return string(desc, fmt="date-time")


# --- deriving versions --------------------------------------------------------


def _parent(schema: JSON, path: str) -> tuple[JSON, str]:
    """The properties dict holding the last step of ``path`` (dots; ``[]``
    steps into array items) and that step's name."""
    *steps, last = path.split(".")
    node = schema
    for step in steps:
        items = step.endswith("[]")
        node = node["properties"][step.removesuffix("[]")]
        if items:
            node = node["items"]
    if last.endswith("[]"):
        raise ValueError(f"{path}: the last step names a field, not array items")
    return node, last


def without(schema: JSON, *paths: str) -> JSON:
    """A copy of ``schema`` without the fields at ``paths`` (``spec.cdrom``,
    ``spec.volumes[].unitNumber``). A missing field is a programming error."""
    out = copy.deepcopy(schema)
    for path in paths:
        parent, name = _parent(out, path)
        del parent["properties"][name]
        if name in parent.get("required", ()):
            parent["required"].remove(name)
            if not parent["required"]:
                del parent["required"]
    return out


def replace(schema: JSON, path: str, node: JSON) -> JSON:
    """A copy of ``schema`` with the field at ``path`` set to ``node``
    (added when absent: its parent object must exist)."""
    out = copy.deepcopy(schema)
    parent, name = _parent(out, path)
    parent.setdefault("properties", {})[name] = copy.deepcopy(node)
    return out


def at(schema: JSON, path: str) -> JSON:
    """The schema node at ``path``."""
    parent, name = _parent(schema, path)
    node: JSON = parent["properties"][name]
    return node


def root(kind_desc: str, *, spec: JSON, status: JSON) -> JSON:
    """A kind's root schema as controller-gen writes it, without
    ``metadata`` (the apiserver checks it as ObjectMeta and OpenAPI refers
    to ObjectMeta)."""
    return obj(
        kind_desc,
        apiVersion=string("APIVersion defines the versioned schema of this representation of "
                          "an object. Servers should convert recognized schemas to the latest "
                          "internal value, and may reject unrecognized values."),
        kind=string("Kind is a string value representing the REST resource this object "
                    "represents. In CamelCase."),
        spec=spec,
        status=status,
    )
