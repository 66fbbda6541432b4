"""Schema validation of objects, with kube-apiserver's error shapes.

A schema (an upstream component schema or a CRD's structural
openAPIV3Schema) is compiled once into a tree of :class:`_Node` and cached;
validating an object walks the object and that tree. Errors are
:class:`FieldError` values whose ``type`` is the Kubernetes cause reason and
whose text reads like kube-apiserver's (``spec.containers[0].image:
Required value``). ``unknown_fields`` lists the fields strict field
validation rejects. Built-in kinds additionally get the essential rules of
``api.rules``. Called by the apiserver's admission on create and update.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from kubevisor.api import schemas
from kubevisor.api.fielderrors import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    TYPE_INVALID,
    FieldError,
    GoRepr,
    go_value,
    invalid,
    invalid_message,
    not_supported,
    required,
    too_long,
)
from kubevisor.api.formats import FORMATS
from kubevisor.api.kinds import JSON, ResourceType

# Re-exported: callers may use validation.FieldError & co.
__all__ = [
    "DUPLICATE", "FORBIDDEN", "INVALID", "NOT_FOUND", "NOT_SUPPORTED", "REQUIRED", "TOO_LONG",
    "TOO_MANY", "TYPE_INVALID", "FieldError", "GoRepr", "go_value", "invalid",
    "invalid_message", "not_supported", "required", "too_long", "unknown_fields",
    "unknown_fields_of", "validate", "validate_schema", "validate_update",
]

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


# ---------------------------------------------------------------------------
# The compiled schema tree


class _Node:
    """One compiled schema node; ``check`` appends errors for a value."""

    __slots__ = (
        "additional",
        "all_of",
        "any_of",
        "builtin",
        "embedded",
        "enum",
        "fmt",
        "fmt_name",
        "int_or_string",
        "items",
        "list_keys",
        "list_type",
        "max_items",
        "max_length",
        "max_props",
        "maximum",
        "min_items",
        "min_length",
        "min_props",
        "minimum",
        "multiple_of",
        "not_",
        "nullable",
        "obj_extra",
        "one_of",
        "pattern",
        "pattern_src",
        "plain_arr",
        "plain_obj",
        "preserve",
        "props",
        "quantity",
        "required",
        "simple",
        "type",
        "unique",
        "x_max",
        "x_min",
    )

    def __init__(self) -> None:
        self.type: str | None = None
        self.nullable = False
        self.props: dict[str, _Node] | None = None
        self.required: tuple[str, ...] = ()
        self.items: _Node | None = None
        self.additional: _Node | bool | None = None
        self.enum: list[Any] | None = None
        self.fmt: Callable[[str], bool] | None = None
        self.fmt_name = ""
        self.int_or_string = False
        self.quantity = False
        self.preserve = False
        self.embedded = False
        self.builtin = False
        self.min_length = self.max_length = self.min_items = self.max_items = None
        self.min_props = self.max_props = None
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.x_min = self.x_max = False
        self.multiple_of: float | None = None
        self.pattern: re.Pattern[str] | None = None
        self.pattern_src = ""
        self.unique = False
        self.list_type = ""
        # Python classes a value may have to pass with no further check (None: check fully).
        self.simple: frozenset[type] | None = None
        # Objects/arrays with nothing to check but their children (fast path).
        self.plain_obj = False
        self.plain_arr = False
        self.obj_extra = False
        self.list_keys: tuple[str, ...] = ()
        self.all_of: list[_Node] = []
        self.any_of: list[_Node] = []
        self.one_of: list[_Node] = []
        self.not_: _Node | None = None


# Keywords that describe but do not constrain: a ref with only these beside it
# is the referenced schema itself.
_DESCRIPTIVE = frozenset({
    "$ref", "allOf", "description", "default", "example", "title", "externalDocs",
    "x-kubernetes-patch-strategy", "x-kubernetes-patch-merge-key", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
})


def _only_ref(schema: JSON) -> str | None:
    ref = schema.get("$ref")
    if ref is None:
        all_of = schema.get("allOf")
        if all_of and len(all_of) == 1 and set(all_of[0]) == {"$ref"}:
            ref = all_of[0]["$ref"]
    if ref is None or not _DESCRIPTIVE.issuperset(schema):
        return None
    return ref


class _Compiler:
    """Turns schema dicts into _Node trees; named components compile once."""

    def __init__(self, *, builtin: bool, enforce_required: bool = True) -> None:
        self.builtin = builtin
        self.enforce_required = enforce_required
        self.named: dict[str, _Node] = {}

    def named_node(self, name: str) -> _Node:
        node = self.named.get(name)
        if node is None:
            node = _Node()
            self.named[name] = node  # placed first: recursive schemas refer to it
            self.fill(node, schemas.component(name))
        return node

    def compile(self, schema: JSON) -> _Node:
        ref = _only_ref(schema)
        if ref is not None:
            return self.named_node(schemas.ref_name(ref))
        node = _Node()
        self.fill(node, schema)
        return node

    def fill(self, node: _Node, schema: JSON) -> None:
        ref = schema.get("$ref")
        if ref is not None:
            self._merge_ref(node, ref)
        all_of = schema.get("allOf") or ()
        if len(all_of) == 1 and set(all_of[0]) == {"$ref"}:
            self._merge_ref(node, all_of[0]["$ref"])
        else:
            node.all_of = [self.compile(s) for s in all_of]
        typ = schema.get("type")
        if isinstance(typ, str):
            node.type = typ
        node.nullable = bool(schema.get("nullable")) or self.builtin
        fmt = schema.get("format")
        if fmt == "int-or-string" or schema.get("x-kubernetes-int-or-string"):
            node.int_or_string = True
            node.type = None
        elif isinstance(fmt, str) and fmt in FORMATS:
            node.fmt = FORMATS[fmt]
            node.fmt_name = fmt
        one_of = schema.get("oneOf")
        if one_of and {s.get("type") for s in one_of} == {"string", "number"}:
            node.quantity = True
        elif one_of and {s.get("type") for s in one_of} == {"string", "integer"}:
            node.int_or_string = True
        elif one_of:
            node.one_of = [self.compile(s) for s in one_of]
        if schema.get("anyOf") and not node.int_or_string:
            node.any_of = [self.compile(s) for s in schema["anyOf"]]
        if "not" in schema:
            node.not_ = self.compile(schema["not"])
        props = schema.get("properties")
        if props:
            node.props = {k: self.compile(v) for k, v in props.items()}
        if schema.get("required") and self.enforce_required:
            node.required = tuple(schema["required"])
        if "items" in schema and isinstance(schema["items"], dict):
            node.items = self.compile(schema["items"])
        add = schema.get("additionalProperties")
        if isinstance(add, dict):
            node.additional = self.compile(add)
        elif isinstance(add, bool):
            node.additional = add
        if "enum" in schema:
            node.enum = list(schema["enum"])
        node.preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        node.embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        node.builtin = self.builtin
        for attr, key in (("min_length", "minLength"), ("max_length", "maxLength"),
                          ("min_items", "minItems"), ("max_items", "maxItems"),
                          ("min_props", "minProperties"), ("max_props", "maxProperties"),
                          ("minimum", "minimum"), ("maximum", "maximum"),
                          ("multiple_of", "multipleOf")):
            if key in schema:
                setattr(node, attr, schema[key])
        node.x_min = bool(schema.get("exclusiveMinimum"))
        node.x_max = bool(schema.get("exclusiveMaximum"))
        if schema.get("pattern"):
            node.pattern_src = schema["pattern"]
            try:
                node.pattern = re.compile(node.pattern_src)
            except re.error:
                node.pattern = None
        node.unique = bool(schema.get("uniqueItems"))
        if not self.builtin:
            # Built-ins check duplicates in their own rules (Go validation).
            list_type = schema.get("x-kubernetes-list-type")
            if list_type in ("set", "map"):
                node.list_type = list_type
                node.list_keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
        node.simple = _simple_classes(node)
        bare = not (node.all_of or node.int_or_string or node.quantity or node.enum is not None
                    or node.any_of or node.one_of or node.not_ is not None)
        node.obj_extra = node.embedded or node.max_props is not None or \
            node.min_props is not None
        node.plain_obj = bare and node.type == "object" and not node.obj_extra
        node.plain_arr = bare and node.type == "array" and node.max_items is None and \
            node.min_items is None and not node.list_type and not node.unique

    def _merge_ref(self, node: _Node, ref: str) -> None:
        target = self.named_node(schemas.ref_name(ref))
        if target is node:
            return
        # A ref with siblings: the siblings only describe, so share the target's checks.
        node.all_of = [target, *node.all_of]


_SCALAR_CLASSES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "boolean": frozenset({bool}),
    "integer": frozenset({int}),
    "number": frozenset({int, float}),
}


def _simple_classes(node: _Node) -> frozenset[type] | None:
    """For a scalar node whose only constraint is its type, the classes that
    pass it (a fast path for the bulk of a Kubernetes object's fields)."""
    if node.type not in _SCALAR_CLASSES or node.all_of or node.int_or_string or node.quantity \
            or node.enum is not None or node.fmt is not None or node.pattern is not None \
            or node.pattern_src or node.any_of or node.one_of or node.not_ is not None \
            or node.min_length is not None or node.max_length is not None \
            or node.minimum is not None or node.maximum is not None or node.multiple_of:
        return None
    classes = _SCALAR_CLASSES[node.type]
    return classes | {type(None)} if node.nullable else classes


def _in_body(path: str) -> str:
    return f"{path or 'body'} in body"


def _check(node: _Node, value: Any, path: str, errs: list[FieldError]) -> None:
    if value is None:
        if not node.nullable:
            errs.append(FieldError(TYPE_INVALID, path, "null",
                                   f"{_in_body(path)} must be of type {node.type or 'object'}: \"null\""))
        return
    for sub in node.all_of:
        _check(sub, value, path, errs)
    typ = node.type
    if node.int_or_string:
        if not (isinstance(value, str) or _type_ok("integer", value)):
            errs.append(FieldError(TYPE_INVALID, path, _json_type(value),
                                   f"{_in_body(path)} must be of type integer,string: "
                                   f"{go_value(_json_type(value))}"))
            return
    elif node.quantity:
        if isinstance(value, str):
            if not _QUANTITY.match(value):
                errs.append(invalid(path, value, "quantities must match the regular expression "
                                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
        elif not _type_ok("number", value):
            errs.append(FieldError(TYPE_INVALID, path, _json_type(value),
                                   f"{_in_body(path)} must be of type string,number: "
                                   f"{go_value(_json_type(value))}"))
        return
    elif typ is not None and not _type_ok(typ, value):
        actual = _json_type(value)
        errs.append(FieldError(TYPE_INVALID, path, actual,
                               f"{_in_body(path)} must be of type {typ}: {go_value(actual)}"))
        return
    if node.enum is not None and value not in node.enum:
        errs.append(not_supported(path, value, node.enum))
    if isinstance(value, dict):
        _check_object(node, value, path, errs)
    elif isinstance(value, list):
        _check_array(node, value, path, errs)
    elif isinstance(value, str):
        _check_string(node, value, path, errs)
    elif not isinstance(value, bool):
        _check_number(node, value, path, errs)
    if node.any_of or node.one_of or node.not_ is not None:
        _check_combinators(node, value, path, errs)


def _check_object(node: _Node, value: JSON, path: str, errs: list[FieldError]) -> None:
    prefix = path + "." if path else ""
    for name in node.required:
        if name not in value or (node.builtin and value[name] is None):
            errs.append(required(prefix + name))
    props = node.props
    additional = node.additional
    if props is not None:
        get = props.get
        for key, sub in value.items():
            child = get(key)
            if child is None:
                if additional.__class__ is _Node:
                    _check_child(additional, sub, prefix + key, errs)  # type: ignore[arg-type]
                continue
            simple = child.simple
            if simple is not None and sub.__class__ in simple:
                continue
            _check_child(child, sub, prefix + key, errs)
    elif additional.__class__ is _Node:
        add: _Node = additional  # type: ignore[assignment]
        simple = add.simple
        for key, sub in value.items():
            if simple is None or sub.__class__ not in simple:
                _check_child(add, sub, prefix + key, errs)
    if node.obj_extra:
        _check_object_extra(node, value, path, errs)


def _check_child(node: _Node, value: Any, path: str, errs: list[FieldError]) -> None:
    """``_check`` with shortcuts for plain objects and arrays (the hot path)."""
    cls = value.__class__
    if cls is dict and node.plain_obj:
        _check_object(node, value, path, errs)
    elif cls is list and node.plain_arr:
        items = node.items
        if items is not None:
            simple = items.simple
            for i, item in enumerate(value):
                if simple is None or item.__class__ not in simple:
                    _check_child(items, item, f"{path}[{i}]", errs)
    else:
        _check(node, value, path, errs)


def _check_object_extra(node: _Node, value: JSON, path: str, errs: list[FieldError]) -> None:
    if node.embedded:
        prefix = path + "." if path else ""
        for key in ("apiVersion", "kind"):
            if not value.get(key):
                errs.append(required(prefix + key, "must not be empty"))
    n = len(value)
    if node.max_props is not None and n > node.max_props:
        errs.append(FieldError(TOO_MANY, path, n, f"must have at most {node.max_props} items"))
    if node.min_props is not None and n < node.min_props:
        errs.append(invalid(path, n, f"{_in_body(path)} should have at least "
                                     f"{node.min_props} properties"))


def _check_array(node: _Node, value: list[Any], path: str, errs: list[FieldError]) -> None:
    items = node.items
    if items is not None:
        simple = items.simple
        for i, item in enumerate(value):
            if simple is None or item.__class__ not in simple:
                _check_child(items, item, f"{path}[{i}]", errs)
    n = len(value)
    if node.max_items is not None and n > node.max_items:
        errs.append(FieldError(TOO_MANY, path, n, f"must have at most {node.max_items} items"))
    if node.min_items is not None and n < node.min_items:
        errs.append(invalid(path, n, f"{_in_body(path)} should have at least "
                                     f"{node.min_items} items"))
    if node.list_type:
        _check_list_type(node, value, path, errs)
    if node.unique:
        seen: set[bytes] = set()
        for item in value:
            key = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            if key in seen:
                errs.append(FieldError(DUPLICATE, path, item, ""))
                break
            seen.add(key)


def _check_list_type(node: _Node, value: list[Any], path: str, errs: list[FieldError]) -> None:
    seen: set[bytes] = set()
    for i, item in enumerate(value):
        if node.list_type == "map":
            if not isinstance(item, dict):
                continue
            keyed = {k: item.get(k) for k in node.list_keys}
            key = orjson.dumps(keyed, option=orjson.OPT_SORT_KEYS)
            shown: Any = GoRepr("map[string]interface {}{" + ", ".join(
                f'"{k}":{go_value(v)}' for k, v in sorted(keyed.items())) + "}")
        else:
            key = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            shown = item
        if key in seen:
            errs.append(FieldError(DUPLICATE, f"{path}[{i}]", shown))
        seen.add(key)


def _check_string(node: _Node, value: str, path: str, errs: list[FieldError]) -> None:
    if node.max_length is not None and len(value) > node.max_length:
        errs.append(too_long(path, value, node.max_length))
    if node.min_length is not None and len(value) < node.min_length:
        errs.append(invalid(path, value, f"{_in_body(path)} should be at least "
                                         f"{node.min_length} chars long"))
    if node.pattern is not None and not node.pattern.search(value):
        errs.append(invalid(path, value, f"{_in_body(path)} should match '{node.pattern_src}'"))
    if node.fmt is not None and not node.fmt(value):
        errs.append(invalid(path, value, f"{_in_body(path)} must be of type {node.fmt_name}: "
                                         f"{go_value(value)}"))


def _num(v: float) -> str:
    return go_value(float(v)) if isinstance(v, float) else str(v)


def _check_number(node: _Node, value: float, path: str, errs: list[FieldError]) -> None:
    if node.minimum is not None:
        if node.x_min and value <= node.minimum:
            errs.append(invalid(path, value, f"{_in_body(path)} should be greater than "
                                             f"{_num(node.minimum)}"))
        elif value < node.minimum:
            errs.append(invalid(path, value, f"{_in_body(path)} should be greater than or "
                                             f"equal to {_num(node.minimum)}"))
    if node.maximum is not None:
        if node.x_max and value >= node.maximum:
            errs.append(invalid(path, value, f"{_in_body(path)} should be less than "
                                             f"{_num(node.maximum)}"))
        elif value > node.maximum:
            errs.append(invalid(path, value, f"{_in_body(path)} should be less than or "
                                             f"equal to {_num(node.maximum)}"))
    if node.multiple_of and not math.isclose(value / node.multiple_of,
                                             round(value / node.multiple_of)):
        errs.append(invalid(path, value, f"{_in_body(path)} should be a multiple of "
                                         f"{_num(node.multiple_of)}"))


def _check_combinators(node: _Node, value: Any, path: str, errs: list[FieldError]) -> None:
    def passes(sub: _Node) -> bool:
        trial: list[FieldError] = []
        _check(sub, value, path, trial)
        return not trial

    if node.any_of and not any(passes(s) for s in node.any_of):
        errs.append(invalid(path, value, f'"{path}" must validate at least one schema (anyOf)'))
    if node.one_of:
        count = sum(1 for s in node.one_of if passes(s))
        if count != 1:
            errs.append(invalid(path, value, f'"{path}" must validate one and only one schema '
                                             "(oneOf)"))
    if node.not_ is not None and passes(node.not_):
        errs.append(invalid(path, value, f'"{path}" must not validate the schema (not)'))


# ---------------------------------------------------------------------------
# Public entry points

_BUILTIN = _Compiler(builtin=True)
# Built-in status: kube-apiserver's Go validation does not insist on the fields
# the schemas mark required there (a node's nodeInfo, a container's imageID).
_BUILTIN_STATUS = _Compiler(builtin=True, enforce_required=False)
_CACHE: dict[tuple[int, bool, bool], tuple[JSON, _Node]] = {}
_CACHE_MAX = 1024


def _compiled(schema: JSON, *, builtin: bool, lax: bool = False) -> _Node:
    key = (id(schema), builtin, lax)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    if builtin:
        node = (_BUILTIN_STATUS if lax else _BUILTIN).compile(schema)
    else:
        node = _Compiler(builtin=False).compile(schema)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (schema, node)  # keeps schema alive, so its id stays unique
    return node


def validate_schema(schema: JSON, obj: Any, *, builtin: bool = False, path: str = "") -> list[FieldError]:
    """Errors of ``obj`` against ``schema``. ``builtin=True`` treats null as
    the zero value everywhere (Go decoding of built-in kinds); otherwise null
    is only allowed where ``nullable: true`` (custom resources)."""
    errs: list[FieldError] = []
    _check(_compiled(schema, builtin=builtin), obj, path, errs)
    return errs


def validate(rt: ResourceType, obj: JSON) -> list[FieldError]:
    """Everything kube-apiserver checks on create/update for this kind:
    metadata rules, the schema, and for built-ins their essential rules."""
    from kubevisor.api import rules

    errs = rules.validate_metadata(rt, obj)
    if rt.custom:
        errs.extend(_validate_custom(rt, obj))
        return errs
    schema = schemas.schema_of(rt)
    status_schema = (schema.get("properties") or {}).get("status")
    if status_schema is None or "status" not in obj:
        _check(_compiled(schema, builtin=True), obj, "", errs)
    else:
        _check(_compiled(schema, builtin=True), {k: v for k, v in obj.items() if k != "status"},
               "", errs)
        _check(_compiled(status_schema, builtin=True, lax=True), obj["status"], "status", errs)
    errs.extend(_shape_dependent(errs, rules.validate_builtin, rt, obj))
    return errs


_SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)


def _shape_dependent(errs: list[FieldError], rule: Callable[..., list[FieldError]],
                     *args: Any) -> list[FieldError]:
    """Run a hand-written rule that assumes the schema's shapes. If the object
    already has schema errors, a rule tripping over a wrong shape adds
    nothing (those errors say what is wrong); otherwise its failure is a bug
    and propagates."""
    try:
        return rule(*args)
    except _SHAPE_ERRORS:
        if not errs:
            raise
        return []


def validate_update(rt: ResourceType, old: JSON, new: JSON) -> list[FieldError]:
    """``validate(rt, new)`` plus what an update may not change (immutable
    selectors, pod spec, roleRef…), comparing with the stored ``old``."""
    from kubevisor.api import updates

    errs = validate(rt, new)
    return errs + _shape_dependent(errs, updates.immutability_errors, rt, old, new)


def _validate_custom(rt: ResourceType, obj: JSON) -> list[FieldError]:
    """A custom resource: metadata as ObjectMeta (Go decoding upstream) plus
    what the CRD's schema says of it (name/generateName only), the rest
    against the CRD's schema."""
    errs: list[FieldError] = []
    node = _compiled(schemas.schema_of(rt), builtin=False)
    if "metadata" in obj:
        meta = obj["metadata"]
        _check(_compiled(schemas.component(schemas.OBJECT_META), builtin=True), meta,
               "metadata", errs)
        declared = node.props.get("metadata") if node.props is not None else None
        if declared is not None and isinstance(meta, dict):
            _check(declared, meta, "metadata", errs)
    _check(node, {k: v for k, v in obj.items() if k != "metadata"}, "", errs)
    return errs


def unknown_fields(schema: JSON, obj: Any, *, builtin: bool | None = None,
                   path: str = "") -> list[str]:
    """Paths of fields the schema does not declare (``spec.foo``,
    ``spec.containers[0].bogus``), as strict field validation reports them.
    ``x-kubernetes-preserve-unknown-fields`` accepts anything below it; an
    object schema without properties accepts anything for built-ins (free
    form, e.g. RawExtension) and nothing for custom resources (pruned).
    ``builtin=None``: built-in if ``schema`` is an upstream component schema,
    custom (a CRD's schema) otherwise. Prefer ``unknown_fields_of(rt, obj)``."""
    if builtin is None:
        builtin = _is_component(schema)
    out: list[str] = []
    node = _compiled(schema, builtin=builtin)
    if not path and isinstance(obj, dict) and node.props is not None and \
            not _TYPE_META.issubset(node.props):
        # A CRD's schema rarely declares apiVersion/kind/metadata; they are always known.
        obj = {k: v for k, v in obj.items() if k not in _TYPE_META or k in node.props}
    _unknown(node, obj, path, out)
    return out


_TYPE_META = frozenset({"apiVersion", "kind", "metadata"})
_COMPONENT_IDS: set[int] = set()


def _is_component(schema: JSON) -> bool:
    if not _COMPONENT_IDS:
        _COMPONENT_IDS.update(id(v) for v in schemas.component_schemas().values())
    return id(schema) in _COMPONENT_IDS


def unknown_fields_of(rt: ResourceType, obj: JSON) -> list[str]:
    """``unknown_fields`` for a whole object of a kind; for custom resources
    apiVersion, kind and metadata (checked as ObjectMeta) are always known."""
    if not rt.custom:
        return unknown_fields(schemas.schema_of(rt), obj)
    out: list[str] = []
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    _unknown(_compiled(schemas.schema_of(rt), builtin=False), body, "", out)
    if isinstance(obj.get("metadata"), dict):
        out.extend(unknown_fields(schemas.component(schemas.OBJECT_META), obj["metadata"],
                                  path="metadata"))
    return out


def _unknown(node: _Node, value: Any, path: str, out: list[str]) -> None:
    if node.preserve or node.int_or_string or node.quantity:
        return
    for sub in node.all_of:
        _unknown(sub, value, path, out)
        if node.props is None and node.items is None:
            return
    if isinstance(value, dict):
        if node.embedded and node.props is None:
            return
        prefix = path + "." if path else ""
        props = node.props
        additional = node.additional
        if props is None and additional is None:
            if not node.builtin and not node.all_of and node.type == "object":
                out.extend(prefix + key for key in value)
            return
        for key, sub_value in value.items():
            child = props.get(key) if props is not None else None
            if child is None:
                if additional.__class__ is not _Node:
                    if additional is not True and not (node.embedded and key in _EMBEDDED_KEYS):
                        out.append(prefix + key)
                    continue
                child = additional  # type: ignore[assignment]
            cls = sub_value.__class__
            if cls is dict or cls is list:  # scalars have no fields to be unknown
                _unknown(child, sub_value, prefix + key, out)  # type: ignore[arg-type]
    elif isinstance(value, list) and node.items is not None:
        items = node.items
        for i, item in enumerate(value):
            cls = item.__class__
            if cls is dict or cls is list:
                _unknown(items, item, f"{path}[{i}]", out)


_EMBEDDED_KEYS = frozenset({"apiVersion", "kind", "metadata"})
