"""OpenAPI v3 schemas compiled into the type tree the patch functions walk.

The apiserver hands every function in this package a kind's root ``schema``
(``{"$ref": "#/components/schemas/<name>"}``, possibly wrapped in ``allOf``,
or an inline CRD schema) and ``defs`` (name → schema) as plain data. This
module turns that into :class:`Node` objects that answer the questions
strategic merge patch and structured merge (server-side apply, managedFields)
ask: what is this field (scalar, struct, map, list), is it atomic, how is a
list keyed (``x-kubernetes-list-type``/``-list-map-keys``), and what patch
strategy and merge key does the field declare. Struct fields are compiled
lazily and shared per referenced definition, so recursive schemas (CRD
``JSONSchemaProps``) are fine and a compiled tree is built once per schema.
Fields without a schema are "deduced" from the value: maps are granular,
lists atomic, like structured-merge-diff's untyped fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCALAR = "scalar"
STRUCT = "struct"
MAP = "map"
LIST = "list"
ANY = "any"

# Keys kube-openapi declares a default for, which the JSON-schema copies we
# may be given do not carry (needed to key list items that omit them).
_KNOWN_KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


class Node:
    """One field's type as the patch algorithms see it."""

    __slots__ = (
        "_compiler",
        "_fields",
        "_props",
        "_ref",
        "atomic",
        "elem",
        "exts",
        "key_defaults",
        "keys",
        "kind",
        "list_type",
        "merge_key",
        "patch_strategy",
        "preserve_unknown",
        "required",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.atomic = False
        self.elem: Node | None = None
        self.list_type = "atomic"
        self.keys: tuple[str, ...] = ()
        self.key_defaults: dict[str, Any] = {}
        self.merge_key = ""
        self.patch_strategy: tuple[str, ...] = ()
        self.preserve_unknown = False
        self.required: frozenset[str] = frozenset()
        self.exts: dict[str, Any] = {}
        self._fields: dict[str, Node] | None = None
        self._props: Mapping[str, Any] | None = None
        self._ref = ""
        self._compiler: _Compiler | None = None

    def clone(self) -> Node:
        other = Node(self.kind)
        other.become(self)
        return other

    def become(self, other: Node) -> None:
        """Copy every attribute of ``other`` (fills a placeholder)."""
        for slot in Node.__slots__:
            setattr(self, slot, getattr(other, slot))
        self.key_defaults = dict(other.key_defaults)

    @property
    def fields(self) -> dict[str, Node]:
        """Struct fields by name (compiled on first use)."""
        if self._fields is None:
            assert self._compiler is not None
            self._fields = self._compiler.struct_fields(self._ref, self._props or {})
        return self._fields

    def child(self, name: str) -> Node:
        """The type of member ``name`` of this struct or map (ANY if unknown)."""
        kind = self.kind
        if kind == STRUCT:
            node = self.fields.get(name)
            if node is not None:
                return node
            return self.elem if self.elem is not None else ANY_NODE
        if kind == MAP:
            return self.elem if self.elem is not None else ANY_NODE
        return ANY_NODE

    def declares(self, name: str) -> bool:
        """True when ``name`` is a declared struct field (not a free map key)."""
        return self.kind == STRUCT and name in self.fields

    def item(self) -> Node:
        """The element type of a list. A struct used where a list is found
        types its own items (a quirk strategic merge patch accepts)."""
        if self.kind != LIST and self.kind != ANY:
            return self
        return self.elem if self.elem is not None else ANY_NODE

    @property
    def smp_strategy(self) -> str:
        """The non-retainKeys part of the patch strategy ('' | merge | replace)."""
        for s in self.patch_strategy:
            if s != "retainKeys":
                return s
        return ""

    @property
    def retain_keys(self) -> bool:
        return "retainKeys" in self.patch_strategy

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Node({self.kind}, atomic={self.atomic}, list={self.list_type}{self.keys})"


ANY_NODE = Node(ANY)
SCALAR_NODE = Node(SCALAR)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _types(schema: Mapping[str, Any]) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    if isinstance(t, str):
        return {t}
    return {x for x in t if x != "null"}


class _Compiler:
    def __init__(self, defs: Mapping[str, Mapping[str, Any]]) -> None:
        self.defs = defs
        self.struct_cache: dict[str, dict[str, Node]] = {}
        self.ref_nodes: dict[str, Node] = {}

    def struct_fields(self, ref: str, props: Mapping[str, Any]) -> dict[str, Node]:
        if ref:
            cached = self.struct_cache.get(ref)
            if cached is not None:
                return cached
        out: dict[str, Node] = {}
        if ref:
            self.struct_cache[ref] = out  # before compiling: recursion-safe
        for name, sub in props.items():
            out[name] = self.compile(sub)
        return out

    def compile(self, schema: Mapping[str, Any] | None) -> Node:
        if not schema:
            return ANY_NODE
        exts: dict[str, Any] = {}
        target: Mapping[str, Any] = schema
        for _ in range(32):  # unwrap single-allOf wrappers, collecting extensions
            for k, v in target.items():
                if k.startswith("x-kubernetes-") and k not in exts:
                    exts[k] = v
            if "$ref" in target:
                base = self._ref_node(_ref_name(target["$ref"]))
                if not exts:
                    return base
                node = base.clone()
                self._semantics(node, {**base.exts, **exts})
                return node
            all_of = target.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
                target = all_of[0]
                continue
            break
        node = self._kind_of(target, exts, "")
        self._semantics(node, exts)
        return node

    def _ref_node(self, name: str) -> Node:
        """The shared node of a named definition; a placeholder while it is
        being compiled, so recursive definitions terminate."""
        hit = self.ref_nodes.get(name)
        if hit is not None:
            return hit
        node = Node(ANY)
        self.ref_nodes[name] = node
        target = self.defs.get(name)
        if target is None:
            return node
        exts = {k: v for k, v in target.items() if k.startswith("x-kubernetes-")}
        inner = target
        all_of = target.get("allOf")
        if "$ref" in target or (isinstance(all_of, list) and len(all_of) == 1):
            built = self.compile(target)
        else:
            built = self._kind_of(inner, exts, name)
            self._semantics(built, exts)
        node.become(built)
        return node

    def _semantics(self, node: Node, exts: dict[str, Any]) -> None:
        node.exts = exts
        strategy = exts.get("x-kubernetes-patch-strategy")
        if isinstance(strategy, str) and strategy:
            node.patch_strategy = tuple(s.strip() for s in strategy.split(",") if s.strip())
        mk = exts.get("x-kubernetes-patch-merge-key")
        if isinstance(mk, str):
            node.merge_key = mk
        if node.kind == LIST:
            self._list_semantics(node, exts)
        elif node.kind in (STRUCT, MAP):
            node.atomic = exts.get("x-kubernetes-map-type") == "atomic"

    def _kind_of(self, target: Mapping[str, Any], exts: Mapping[str, Any], ref: str) -> Node:
        if exts.get("x-kubernetes-int-or-string") or "oneOf" in target or "anyOf" in target:
            return Node(SCALAR)
        types = _types(target)
        props = target.get("properties")
        addl = target.get("additionalProperties")
        if isinstance(props, Mapping) and props:
            node = Node(STRUCT)
            node._props = props
            node._ref = ref
            node._compiler = self
            req = target.get("required")
            if isinstance(req, list):
                node.required = frozenset(str(x) for x in req)
            if isinstance(addl, Mapping):
                node.elem = self.compile(addl)
            if exts.get("x-kubernetes-preserve-unknown-fields"):
                node.preserve_unknown = True
                if node.elem is None:
                    node.elem = ANY_NODE
            return node
        if isinstance(addl, Mapping) or addl is True:
            node = Node(MAP)
            node.elem = self.compile(addl) if isinstance(addl, Mapping) else ANY_NODE
            return node
        if "items" in target or "array" in types:
            node = Node(LIST)
            items = target.get("items")
            node.elem = self.compile(items) if isinstance(items, Mapping) else ANY_NODE
            return node
        if "object" in types or exts.get("x-kubernetes-preserve-unknown-fields"):
            node = Node(MAP)
            node.elem = ANY_NODE
            node.preserve_unknown = True
            return node
        if types:
            return Node(SCALAR)
        return Node(ANY)

    def _list_semantics(self, node: Node, exts: Mapping[str, Any]) -> None:
        lt = exts.get("x-kubernetes-list-type")
        keys = exts.get("x-kubernetes-list-map-keys")
        if lt in ("atomic", "set", "map"):
            node.list_type = lt
        elif "merge" in node.patch_strategy:
            node.list_type = "map" if node.merge_key else "set"
        else:
            node.list_type = "atomic"
        if node.list_type == "map":
            if isinstance(keys, list) and keys:
                node.keys = tuple(str(k) for k in keys)
            elif node.merge_key:
                node.keys = (node.merge_key,)
            else:
                node.list_type = "atomic"
            item = node.item()
            for k in node.keys:
                default = None
                if item.kind == STRUCT:
                    sub = item.fields.get(k)
                    raw = self._raw_default(item, k)
                    if raw is not None:
                        default = raw
                    elif sub is not None and k in _KNOWN_KEY_DEFAULTS:
                        default = _KNOWN_KEY_DEFAULTS[k]
                if default is not None:
                    node.key_defaults[k] = default
        node.atomic = node.list_type == "atomic"

    def _raw_default(self, item: Node, key: str) -> Any:
        props = item._props or {}
        sub = props.get(key)
        if isinstance(sub, Mapping):
            return sub.get("default")
        return None


OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

_CACHE_LIMIT = 4096
_NO_DEFS: Mapping[str, Mapping[str, Any]] = {}
_CACHE: dict[tuple[int, int], tuple[Any, Any, Node]] = {}
_COMPILERS: dict[int, tuple[Any, _Compiler]] = {}


def compile_schema(
    schema: Mapping[str, Any] | None, defs: Mapping[str, Mapping[str, Any]] | None
) -> Node:
    """The compiled root :class:`Node` for a kind's schema (cached by the
    identity of ``schema`` and ``defs``, which the cache holds so their ids
    stay valid: pass the same long-lived objects on every call)."""
    if schema is None:
        return ANY_NODE
    defs = defs if defs is not None else _NO_DEFS
    key = (id(schema), id(defs))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is schema and hit[1] is defs:
        return hit[2]
    if len(_CACHE) > _CACHE_LIMIT:  # callers should pass long-lived schemas; stay bounded if not
        _CACHE.clear()
        _COMPILERS.clear()
    comp_hit = _COMPILERS.get(id(defs))
    if comp_hit is not None and comp_hit[0] is defs:
        compiler = comp_hit[1]
    else:
        compiler = _Compiler(defs)
        _COMPILERS[id(defs)] = (defs, compiler)
    node = compiler.compile(schema)
    if node.kind == STRUCT and OBJECT_META in defs:
        meta = node.fields.get("metadata")
        if meta is None or meta.kind in (MAP, ANY):
            # custom resource schemas leave metadata out or say only "type: object";
            # kube-apiserver types it as ObjectMeta all the same
            node.fields["metadata"] = compiler.compile({"$ref": "#/components/schemas/" + OBJECT_META})
    _CACHE[key] = (schema, defs, node)
    return node
