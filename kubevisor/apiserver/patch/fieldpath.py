"""Field sets: which fields of an object a manager owns, and their
``fieldsV1`` encoding in ``metadata.managedFields``.

A field set is a trie kept in the ``fieldsV1`` shape itself: keys are path
elements (``f:<field>``, ``k:{"name":"nginx"}`` for a keyed list item,
``v:"value"`` for a set item, ``i:<n>`` for an index) and the key ``"."``
marks the node itself as a member. Internally a member leaf is ``{".": {}}``;
:func:`encode` turns it into the wire form (``{}``, with ``"."`` only where a
member also has children, all keys in structured-merge-diff's order), and
:func:`decode` reads the wire form back, canonicalising keys. Used by
:mod:`.structured` (building sets from objects) and by :mod:`.managed` and
:mod:`.ssa` (ownership arithmetic). Set operations never mutate inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from kubevisor.apiserver.patch.errors import InvalidApplyError

Trie = dict[str, Any]  # dict[str, Trie]; "." marks membership
SELF = "."
_LEAF: Trie = {SELF: {}}


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it (compact, HTML-safe, keys sorted)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def field_pe(name: str) -> str:
    return "f:" + name


def key_pe(keys: dict[str, Any]) -> str:
    return "k:" + go_json(keys)


def value_pe(value: Any) -> str:
    return "v:" + go_json(value)


def index_pe(index: int) -> str:
    return f"i:{index}"


# -- building and querying ---------------------------------------------------


def insert(trie: Trie, path: tuple[str, ...] | list[str]) -> None:
    """Add ``path`` as a member (mutates ``trie``: for builders only)."""
    node = trie
    for pe in path:
        nxt = node.get(pe)
        if nxt is None:
            nxt = node[pe] = {}
        node = nxt
    node[SELF] = {}


def has(trie: Trie, path: tuple[str, ...] | list[str]) -> bool:
    node: Trie | None = trie
    for pe in path:
        assert node is not None
        node = node.get(pe)
        if node is None:
            return False
    return node is not None and SELF in node


def empty(trie: Trie) -> bool:
    return not trie


def members(trie: Trie, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every member path, in structured-merge-diff's order."""
    if SELF in trie and prefix:
        yield prefix
    for pe in sorted((k for k in trie if k != SELF), key=sort_key):
        yield from members(trie[pe], (*prefix, pe))


def union(a: Trie, b: Trie) -> Trie:
    if not a:
        return b
    if not b:
        return a
    out: Trie = dict(a)
    for pe, sub in b.items():
        mine = out.get(pe)
        if mine is None:
            out[pe] = sub
        elif pe != SELF:
            out[pe] = union(mine, sub)
    return out


def difference(a: Trie, b: Trie) -> Trie:
    """Members of ``a`` that are not members of ``b``."""
    if not b or not a:
        return a
    out: Trie = {}
    for pe, sub in a.items():
        if pe == SELF:
            if SELF not in b:
                out[SELF] = {}
            continue
        other = b.get(pe)
        if other is None:
            out[pe] = sub
            continue
        rest = difference(sub, other)
        if rest:
            out[pe] = rest
    return out


def intersection(a: Trie, b: Trie) -> Trie:
    if not a or not b:
        return {}
    out: Trie = {}
    for pe, sub in a.items():
        other = b.get(pe)
        if other is None:
            continue
        if pe == SELF:
            out[SELF] = {}
            continue
        both = intersection(sub, other)
        if both:
            out[pe] = both
    return out


def recursive_difference(a: Trie, b: Trie) -> Trie:
    """``a`` without the members of ``b`` and everything below them."""
    if not a or not b:
        return a
    out: Trie = {}
    for pe, sub in a.items():
        other = b.get(pe)
        if other is None:
            out[pe] = sub
        elif pe == SELF:
            continue
        elif SELF in other:
            continue  # the whole subtree is excluded
        else:
            rest = recursive_difference(sub, other)
            if rest:
                out[pe] = rest
    return out


def from_paths(*paths: tuple[str, ...]) -> Trie:
    out: Trie = {}
    for p in paths:
        insert(out, p)
    return out


# -- ordering ------------------------------------------------------------------


def _value_rank(v: Any) -> tuple[Any, ...]:
    # structured-merge-diff's value order: numbers < strings < bools < lists < maps < null
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, int | float):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, tuple(_value_rank(x) for x in v))
    if isinstance(v, dict):
        return (4, tuple((k, _value_rank(x)) for k, x in sorted(v.items())))
    return (5,)


@lru_cache(maxsize=65536)
def sort_key(pe: str) -> tuple[Any, ...]:
    kind = pe[:2]
    if kind == "f:":
        return (0, pe[2:])
    if kind == "k:":
        try:
            fields = json.loads(pe[2:])
        except ValueError:
            return (1, pe)
        return (1, tuple((k, _value_rank(v)) for k, v in sorted(fields.items())))
    if kind == "v:":
        try:
            return (2, _value_rank(json.loads(pe[2:])))
        except ValueError:
            return (2, (9, pe))
    if kind == "i:":
        try:
            return (3, int(pe[2:]))
        except ValueError:
            return (3, 0)
    return (4, pe)


# -- wire form -----------------------------------------------------------------


def encode(trie: Trie) -> dict[str, Any]:
    """The ``fieldsV1`` object for a set."""
    out: dict[str, Any] = {}
    keys = [k for k in trie if k != SELF]
    if len(keys) > 1:
        keys.sort(key=sort_key)
    for pe in keys:
        sub = trie[pe]
        if len(sub) == 1 and SELF in sub:
            out[pe] = {}
        else:
            child = encode(sub)
            if SELF in sub:
                child = {SELF: {}, **child}
            out[pe] = child
    return out


def decode(fields: Any) -> Trie:
    """Read a ``fieldsV1`` object; raises :class:`InvalidApplyError` if malformed."""
    if not isinstance(fields, dict):
        raise InvalidApplyError("error decoding set: fieldsV1 must be an object")
    return _decode(fields)


def _decode(fields: dict[str, Any]) -> Trie:
    if not fields:
        return {SELF: {}}
    out: Trie = {}
    for pe, sub in fields.items():
        if pe == SELF:
            out[SELF] = {}
            continue
        if not isinstance(sub, dict):
            raise InvalidApplyError(f"error decoding set: {pe} is not an object")
        out[canonical_pe(pe)] = _decode(sub)
    return out


@lru_cache(maxsize=65536)
def canonical_pe(pe: str) -> str:
    kind = pe[:2]
    if kind == "f:" or kind == "i:":
        return pe
    if kind == "k:" or kind == "v:":
        try:
            return kind + go_json(json.loads(pe[2:]))
        except ValueError as exc:
            raise InvalidApplyError(f"error decoding set: bad path element {pe!r}") from exc
    raise InvalidApplyError(f"error decoding set: unknown path element type {pe!r}")


# -- human-readable paths (conflict messages) -----------------------------------


def _go_string(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return go_json(v)


@lru_cache(maxsize=65536)
def pe_string(pe: str) -> str:
    kind, rest = pe[:2], pe[2:]
    if kind == "f:":
        return "." + rest
    if kind == "k:":
        fields = json.loads(rest)
        return "[" + ",".join(f"{k}={_go_string(v)}" for k, v in sorted(fields.items())) + "]"
    if kind == "v:":
        return f"[={_go_string(json.loads(rest))}]"
    if kind == "i:":
        return f"[{rest}]"
    return "{{invalid path element}}"


def path_string(path: tuple[str, ...]) -> str:
    """``.spec.containers[name="nginx"].image`` for a path."""
    return "".join(pe_string(pe) for pe in path)
