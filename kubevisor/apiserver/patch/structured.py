"""Structured values: objects seen through their schema, as
structured-merge-diff sees them.

Four operations on JSON-shaped values and a compiled :class:`Node`:
:func:`to_field_set` (the fields a value sets: what an applier owns),
:func:`compare` (fields added, modified and removed between two versions:
what an updater changed), :func:`merge` (an apply configuration merged into
the live object: keyed lists by key, sets as sets, atomic values replaced)
and :func:`remove_items` (drop the fields of a set: pruning). Used by
:mod:`.managed` and :mod:`.ssa`.

One deliberate approximation: Go's typed objects always carry non-pointer
structs (``metadata``, ``spec``, ``status``, ``template``, ``strategy``,
``updateStrategy``, ``resources``), so kube-apiserver never records those
nodes themselves as added or removed; :data:`VALUE_STRUCTS` names them so
our field sets match (``f:spec`` without ``"."``).
"""

from __future__ import annotations

from typing import Any

from kubevisor.apiserver.patch.errors import InvalidApplyError
from kubevisor.apiserver.patch.fieldpath import SELF, Trie, insert, key_pe, value_pe
from kubevisor.apiserver.patch.schema_walk import ANY, LIST, MAP, SCALAR, STRUCT, Node

VALUE_STRUCTS = frozenset(
    {"metadata", "spec", "status", "template", "strategy", "updateStrategy", "resources"}
)


# A custom resource's schema may leave these out; every object has them.
_ALWAYS_KNOWN = frozenset({"apiVersion", "kind", "metadata"})


def _zero(parent: Node, name: str, child: Node) -> Any:
    """What Go's empty object holds for field ``name`` of an existing struct:
    an empty value for value structs and for required (non-omitempty) maps
    and lists, else MISSING."""
    ck = child.kind
    if name in VALUE_STRUCTS and ck == STRUCT:
        return {}
    if name in parent.required:
        if ck == LIST:
            return []
        if ck in (MAP, STRUCT):
            return {}
    return MISSING


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:  # pragma: no cover
        return "MISSING"


MISSING: Any = _Missing()


def _kind(node: Node, value: Any) -> str:
    """The effective kind: deduced for untyped fields, leaf for nulls and
    values whose shape does not fit the schema."""
    kind = node.kind
    if value is None:
        return SCALAR
    if kind == ANY:
        if isinstance(value, dict):
            return MAP
        return SCALAR  # deduced lists are atomic
    if kind in (STRUCT, MAP):
        if node.atomic or not isinstance(value, dict):
            return SCALAR
        return kind
    if kind == LIST:
        if node.atomic or not isinstance(value, list):
            return SCALAR
        return LIST
    return SCALAR


def item_pe(item: Any, node: Node, strict: bool = False) -> str | None:
    """The path element of a list item (None if it cannot be keyed)."""
    if node.list_type == "map":
        if not isinstance(item, dict):
            if strict:
                raise InvalidApplyError("expected a map in an associative list")
            return None
        keys: dict[str, Any] = {}
        for k in node.keys:
            if k in item and item[k] is not None:
                v = item[k]
            elif k in node.key_defaults:
                v = node.key_defaults[k]
            else:
                if strict:
                    raise InvalidApplyError(
                        f"associative list with keys has an element that omits key field {k!r} "
                        "(and doesn't have default value)"
                    )
                return None
            if isinstance(v, dict | list):
                if strict:
                    raise InvalidApplyError(f"key field {k!r} must be a scalar")
                return None
            keys[k] = v
        return key_pe(keys)
    if node.list_type == "set":
        if isinstance(item, dict | list):
            if strict:
                raise InvalidApplyError("set items must be scalars")
            return None
        return value_pe(item)
    return None


def _list_pes(items: list[Any], node: Node, strict: bool, where: str) -> list[str] | None:
    pes: list[str] = []
    for it in items:
        pe = item_pe(it, node, strict)
        if pe is None:
            return None
        pes.append(pe)
    return pes


def _duplicates(pes: list[str]) -> set[str]:
    if len(pes) < 2:
        return set()
    seen: set[str] = set()
    dups: set[str] = set()
    for pe in pes:
        if pe in seen:
            dups.add(pe)
        seen.add(pe)
    return dups


# -- ToFieldSet ------------------------------------------------------------------


def to_field_set(value: Any, node: Node, *, strict: bool = False) -> Trie:
    """The fields ``value`` sets. ``strict`` (apply configurations) raises
    :class:`InvalidApplyError` for unknown fields, wrong shapes and duplicate keys."""
    out: Trie = {}
    _fs(value, node, out, strict, "")
    out.pop(SELF, None)
    return out


def _type_error(where: str, node: Node, value: Any) -> InvalidApplyError:
    want = {STRUCT: "map", MAP: "map", LIST: "list", SCALAR: "scalar"}.get(node.kind, "value")
    got = (
        "map"
        if isinstance(value, dict)
        else "list"
        if isinstance(value, list)
        else type(value).__name__
    )
    return InvalidApplyError(f"{where or '.'}: expected {want}, got {got}")


def _fs(value: Any, node: Node, t: Trie, strict: bool, where: str) -> None:
    kind = _kind(node, value)
    if kind == SCALAR:
        if strict and value is not None:
            nk = node.kind
            if (
                (nk in (STRUCT, MAP) and not isinstance(value, dict))
                or (nk == LIST and not isinstance(value, list))
                or (nk == SCALAR and isinstance(value, dict | list))
            ):
                raise _type_error(where, node, value)
        t[SELF] = {}
        return
    if kind == LIST:
        pes = _list_pes(value, node, strict, where)
        if pes is None:
            t[SELF] = {}
            return
        elem = node.item()
        seen: set[str] = set()
        dups: set[str] = set()
        for pe in pes:
            if pe in seen:
                dups.add(pe)
            seen.add(pe)
        if dups and strict:
            raise InvalidApplyError(f"{where}: duplicate entries for key {sorted(dups)[0]}")
        for pe, item in zip(pes, value, strict=True):
            sub = t.get(pe)
            if sub is None:
                sub = t[pe] = {}
            if pe not in dups:
                _fs(item, elem, sub, strict, where + "[" + pe + "]" if strict else "")
            sub[SELF] = {}
        return
    # STRUCT or MAP (granular)
    is_struct = node.kind == STRUCT
    fields = node.fields if is_struct else None
    for k, v in value.items():
        declared = fields is not None and k in fields
        if declared:
            child = fields[k]  # type: ignore[index]
        else:
            if (
                strict
                and is_struct
                and node.elem is None
                and not (where == "" and k in _ALWAYS_KNOWN)
            ):
                raise InvalidApplyError(f"{where}.{k}: field not declared in schema")
            child = node.child(k)
        sub: Trie = {}
        t["f:" + k] = sub
        _fs(v, child, sub, strict, where + "." + k if strict else "")
        if not declared or v is None or (isinstance(v, dict) and not v):
            sub[SELF] = {}


# -- Compare -------------------------------------------------------------------


class Comparison:
    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added: Trie = {}
        self.modified: Trie = {}
        self.removed: Trie = {}

    def changed(self) -> bool:
        return bool(self.added or self.modified or self.removed)


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        if not (isinstance(a, int | float) and isinstance(b, int | float)):
            return False
    return bool(a == b)


def compare(old: Any, new: Any, node: Node) -> Comparison:
    """What changed from ``old`` to ``new`` (either may be MISSING)."""
    out = Comparison()
    if old is MISSING or old is None:
        old = {}
    if new is MISSING or new is None:
        new = {}
    if not old:
        _all_added(new, node, out.added, True)
        out.added.pop(SELF, None)
        return out
    _cmp(old, new, node, (), out)
    for t in (out.added, out.modified, out.removed):
        t.pop(SELF, None)
    return out


def _all_added(value: Any, node: Node, t: Trie, exists: bool = False) -> None:
    """Fast path of compare(empty → value): every node is added, except
    value structs of a struct that exists (``exists``: Go's empty object has
    them, so only their contents are added)."""
    kind = _kind(node, value)
    if kind == SCALAR:
        t[SELF] = {}
        return
    if kind == LIST:
        pes = _list_pes(value, node, False, "")
        if pes is None:
            t[SELF] = {}
            return
        if not pes:
            t[SELF] = {}
            return
        elem = node.item()
        dups = _duplicates(pes)
        for pe, item in zip(pes, value, strict=True):
            sub = t.get(pe)
            if sub is None:
                sub = t[pe] = {}
                if pe not in dups:  # duplicated items are owned whole, not field by field
                    _all_added(item, elem, sub, False)
            sub[SELF] = {}
        t[SELF] = {}
        return
    if not value:
        t[SELF] = {}
        return
    is_struct = node.kind == STRUCT
    fields = node.fields if is_struct else None
    for k, v in value.items():
        child = fields.get(k) if fields is not None else None
        if child is None:
            child = node.child(k)
        sub: Trie = {}
        if exists and is_struct and isinstance(v, dict | list):
            zero = _zero(node, k, child)
            if zero is not MISSING and type(zero) is type(v):
                if not v:
                    continue  # empty on both sides: unchanged
                t["f:" + k] = sub
                _all_added(v, child, sub, isinstance(v, dict))
                sub.pop(SELF, None)
                continue
        t["f:" + k] = sub
        _all_added(v, child, sub, False)
    t[SELF] = {}


def _cmp(lhs: Any, rhs: Any, node: Node, path: tuple[str, ...], out: Comparison) -> None:
    lk = _kind(node, lhs) if lhs is not MISSING else None
    rk = _kind(node, rhs) if rhs is not MISSING else None
    kind = rk if lk is None else lk if rk is None else (lk if lk == rk else SCALAR)
    if kind in (MAP, STRUCT, LIST):
        l_empty = lhs is MISSING or not lhs
        r_empty = rhs is MISSING or not rhs
        if l_empty and r_empty:
            kind = SCALAR
    if kind == SCALAR:
        if lhs is MISSING:
            insert(out.added, path)
        elif rhs is MISSING:
            insert(out.removed, path)
        elif not _same(lhs, rhs) and lhs != rhs:
            insert(out.modified, path)
        return
    if kind == LIST:
        elem = node.item()
        lpes = _list_pes(lhs, node, False, "") if lhs is not MISSING else []
        rpes = _list_pes(rhs, node, False, "") if rhs is not MISSING else []
        if lpes is None or rpes is None:
            if lhs is MISSING:
                insert(out.added, path)
            elif rhs is MISSING:
                insert(out.removed, path)
            elif lhs != rhs:
                insert(out.modified, path)
            return
        lmap: dict[str, list[Any]] = {}
        for pe, item in zip(lpes, lhs if lhs is not MISSING else [], strict=True):
            lmap.setdefault(pe, []).append(item)
        rmap: dict[str, list[Any]] = {}
        for pe, item in zip(rpes, rhs if rhs is not MISSING else [], strict=True):
            rmap.setdefault(pe, []).append(item)
        for pe in list(lmap) + [p for p in rmap if p not in lmap]:
            ll = lmap.get(pe, [])
            rl = rmap.get(pe, [])
            if len(ll) == 1 and len(rl) == 1 and ll[0] == rl[0]:
                continue
            if len(ll) <= 1 and len(rl) <= 1:
                _cmp(ll[0] if ll else MISSING, rl[0] if rl else MISSING, elem, (*path, pe), out)
            elif len(ll) >= 2 and len(rl) >= 2:
                if ll != rl:
                    insert(out.modified, (*path, pe))
            elif len(ll) >= 2:
                if rl:
                    _cmp(MISSING, rl[0], elem, (*path, pe), out)
                insert(out.removed, (*path, pe))
            else:
                if ll:
                    _cmp(ll[0], MISSING, elem, (*path, pe), out)
                insert(out.added, (*path, pe))
    else:
        ld = lhs if lhs is not MISSING else {}
        rd = rhs if rhs is not MISSING else {}
        is_struct = node.kind == STRUCT
        for k in list(ld) + [k for k in rd if k not in ld]:
            child = node.child(k)
            lv = ld.get(k, MISSING)
            rv = rd.get(k, MISSING)
            if is_struct and (lv is MISSING or rv is MISSING):
                zero = _zero(node, k, child)
                if zero is not MISSING:
                    if lv is MISSING and lhs is not MISSING:
                        lv = zero
                    if rv is MISSING and rhs is not MISSING:
                        rv = zero
            if lv is not MISSING and rv is not MISSING and (lv is rv or lv == rv):
                continue  # unchanged subtree (C-speed equality; 1 == True is the one blind spot)
            _cmp(lv, rv, child, (*path, "f:" + k), out)
    if path:
        if lhs is MISSING:
            insert(out.added, path)
        elif rhs is MISSING:
            insert(out.removed, path)


# -- Merge -------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """A copy of a configuration value without null map entries."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def merge(live: Any, config: Any, node: Node) -> Any:
    """``config`` merged into ``live`` (neither is mutated)."""
    if config is MISSING:
        return live
    if live is MISSING or live is None:
        return _clean(config)
    kind = _kind(node, config)
    if kind == SCALAR or _kind(node, live) != kind:
        return _clean(config)
    if kind == LIST:
        return _merge_list(live, config, node)
    out = dict(live)
    for k, v in config.items():
        child = node.child(k)
        if v is None:
            cur = out.get(k)
            if isinstance(cur, dict | list) and _kind(child, cur) != SCALAR:
                continue  # a null map or list in the config leaves the live one
            out.pop(k, None)
            continue
        out[k] = merge(out.get(k, MISSING), v, child)
    return out


def _merge_list(live: list[Any], config: list[Any], node: Node) -> list[Any]:
    lpes = _list_pes(live, node, False, "")
    rpes = _list_pes(config, node, False, "")
    if lpes is None or rpes is None:
        return _clean(config)
    elem = node.item()
    lfirst: dict[str, Any] = {}
    for pe, item in zip(lpes, live, strict=True):
        lfirst.setdefault(pe, item)
    rpos: dict[str, int] = {}
    for i, pe in enumerate(rpes):
        rpos.setdefault(pe, i)
    out: list[Any] = []
    emitted: set[str] = set()
    ri = 0

    def emit_config_until(stop: int) -> None:
        nonlocal ri
        while ri <= stop and ri < len(config):
            pe = rpes[ri]
            if pe not in emitted:
                emitted.add(pe)
                out.append(merge(lfirst.get(pe, MISSING), config[ri], elem))
            ri += 1

    for pe, item in zip(lpes, live, strict=True):
        pos = rpos.get(pe)
        if pos is None:
            out.append(item)
        elif pe not in emitted:
            emit_config_until(pos)
    emit_config_until(len(config) - 1)
    return out


# -- RemoveItems / EnsureNamedFieldsAreMembers ---------------------------------------


def remove_items(value: Any, t: Trie, node: Node) -> Any:
    """``value`` without the members of ``t`` (and what is below them)."""
    if not t:
        return value
    kind = _kind(node, value)
    if kind == LIST:
        pes = _list_pes(value, node, False, "")
        if pes is None:
            return value
        elem = node.item()
        dups = _duplicates(pes)
        out_l: list[Any] = []
        for pe, item in zip(pes, value, strict=True):
            sub = t.get(pe)
            if sub is None:
                out_l.append(item)
            elif SELF not in sub:
                # duplicated items are owned whole: never trimmed field by field
                out_l.append(item if pe in dups else remove_items(item, sub, elem))
        return out_l
    if kind in (MAP, STRUCT):
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = t.get("f:" + k)
            if sub is None:
                out[k] = v
            elif SELF not in sub:
                out[k] = remove_items(v, sub, node.child(k))
        return out
    return value


def ensure_named(t: Trie, node: Node) -> Trie:
    """``t`` plus, as members, the declared struct fields it has children under."""
    if not t:
        return t
    out: Trie = {}
    is_struct = node.kind == STRUCT
    fields = node.fields if is_struct else None
    for pe, sub in t.items():
        if pe == SELF:
            out[SELF] = {}
            continue
        if pe.startswith("f:"):
            name = pe[2:]
            child = node.child(name)
            new_sub = ensure_named(sub, child)
            if fields is not None and name in fields and SELF not in new_sub:
                new_sub = {**new_sub, SELF: {}}
            out[pe] = new_sub
        else:
            out[pe] = ensure_named(sub, node.item())
    return out
