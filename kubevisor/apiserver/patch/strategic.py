"""Strategic merge patch (``application/strategic-merge-patch+json``).

Called by the apiserver's PATCH handler for built-in kinds (custom resources
get 415 there). Behaviour follows kube-apiserver's ``strategicpatch``
package as the server applies it: maps merge recursively and ``null``
deletes; lists whose field declares ``x-kubernetes-patch-strategy: merge``
merge by ``x-kubernetes-patch-merge-key`` (maps) or as sets (scalars), other
lists are replaced; ``replace`` strategy replaces maps too. Directives:
``$patch: replace|delete`` on a map, ``$patch: replace|delete`` items in a
merging list, ``$retainKeys``, ``$setElementOrder/<field>`` and
``$deleteFromPrimitiveList/<field>`` (what ``kubectl apply``, ``edit``,
``patch``, ``label``, ``annotate`` and ``scale`` send). Item order in merged
lists follows kube-apiserver: ``$setElementOrder`` first, then patch order,
then live order.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from kubevisor.apiserver.patch.errors import BadPatchError, PatchNotApplicableError, depth_guarded
from kubevisor.apiserver.patch.json_patches import decode
from kubevisor.apiserver.patch.schema_walk import Node, compile_schema

JSON = dict[str, Any]

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ORDER = "$setElementOrder"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList"

ERR_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_SET_ORDER = "invalid patch format of setElementOrder list"
ERR_LIST_OF_LISTS = "lists of lists are not supported"


@depth_guarded
def strategic_merge_patch(
    obj: JSON,
    patch: bytes | str | JSON,
    *,
    schema: dict[str, Any] | None,
    defs: dict[str, dict[str, Any]] | None,
) -> JSON:
    """Apply a strategic merge patch to a copy of ``obj``; return the copy."""
    doc = decode(patch)
    if not isinstance(doc, dict):
        raise BadPatchError("invalid JSON document")
    node = compile_schema(schema, defs)
    result = _merge_map(_clone(obj), _clone(doc), node)
    return result


def _clone(value: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return copy.deepcopy(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _fmt(value: Any) -> str:
    return orjson.dumps(value).decode() if not isinstance(value, str) else value


def _no_merge_key(item: Any, key: str) -> BadPatchError:
    return BadPatchError(f"map: {_fmt(item)} does not contain declared merge key: {key}")


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """Drop ``$patch`` maps from a value taken whole from the patch."""
    if isinstance(value, dict):
        if DIRECTIVE in value:
            return None, False
        for k in list(value):
            v, keep = _remove_directives(value[k])
            if keep:
                value[k] = v
            else:
                del value[k]
        return value, True
    if isinstance(value, list):
        out = []
        for v in value:
            nv, keep = _remove_directives(v)
            if keep:
                out.append(nv)
        return out, True
    return value, True


def _discard_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for k in [k for k, v in value.items() if v is None]:
            del value[k]
        for v in value.values():
            _discard_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _discard_nulls(v)


def _take(original: JSON, key: str, value: Any) -> None:
    _discard_nulls(value)
    v, keep = _remove_directives(value)
    if keep:
        original[key] = v
    else:
        original.pop(key, None)


def _suffix(key: str, prefix: str, error: str) -> str:
    head, sep, tail = key.partition("/")
    if not sep or head != prefix:
        raise BadPatchError(error)
    return tail


def _merge_map(original: Any, patch: JSON, node: Node) -> JSON:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            del patch[DIRECTIVE]
            return patch
        if directive == "delete":
            return {}
        raise BadPatchError(f"unknown patch type: {directive} in map: {_fmt(patch)}")
    if not isinstance(original, dict):
        original = {}
    if RETAIN_KEYS in patch:
        _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, node)

    for key in list(patch):
        if key not in patch:
            continue
        value = patch[key]
        is_delete_list = False
        if key.startswith(DELETE_PRIMITIVE):
            key = _suffix(key, DELETE_PRIMITIVE, ERR_BAD_PRIMITIVE_LIST)
            is_delete_list = True
        if value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not is_delete_list:
                _take(original, key, value)
            continue
        current = original[key]
        kind = _kind(current)
        if kind != _kind(value):
            if not is_delete_list:
                _take(original, key, value)
            continue
        if kind == "map":
            child = node.child(key)
            if child.smp_strategy == "replace":
                original[key] = value
            else:
                original[key] = _merge_map(current, value, child)
        elif kind == "list":
            child = node.child(key)
            if child.smp_strategy == "merge" or is_delete_list:
                original[key] = _merge_list(current, value, child, is_delete_list)
            else:
                original[key] = value
        else:
            _take(original, key, value)
    return original


def _apply_retain_keys(original: JSON, patch: JSON) -> None:
    keep = patch.pop(RETAIN_KEYS)
    if not isinstance(keep, list):
        raise BadPatchError(ERR_BAD_RETAIN_KEYS)
    try:
        wanted = set(keep)
    except TypeError as exc:
        raise BadPatchError(ERR_BAD_RETAIN_KEYS) from exc
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_PRIMITIVE) or k.startswith(SET_ORDER):
            continue
        if k not in wanted:
            raise BadPatchError(ERR_BAD_RETAIN_KEYS)
    for k in [k for k in original if k not in wanted]:
        del original[k]


def _element_kind(*lists: list[Any]) -> str:
    kind = ""
    for lst in lists:
        for v in lst:
            k = _kind(v)
            if k == "list":
                raise PatchNotApplicableError(ERR_LIST_OF_LISTS)
            if not kind:
                kind = k
            elif k != kind:
                raise BadPatchError(f"list element types are not identical: {_fmt(list(lists))}")
    if not kind:
        raise BadPatchError("no elements in any of the given slices")
    return kind


def _apply_set_element_order(original: JSON, patch: JSON, node: Node) -> None:
    for key in [k for k in patch if k.startswith(SET_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise BadPatchError(ERR_BAD_SET_ORDER)
        field = _suffix(key, SET_ORDER, ERR_BAD_SET_ORDER)
        found_orig = field in original
        found_patch = field in patch
        orig_list = original.get(field)
        patch_list = patch.get(field)
        if found_orig and not isinstance(orig_list, list):
            raise BadPatchError(
                f"expected a []interface {{}}, but received a {type(orig_list).__name__}"
            )
        if found_patch and not isinstance(patch_list, list):
            raise BadPatchError(
                f"expected a []interface {{}}, but received a {type(patch_list).__name__}"
            )
        child = node.child(field)
        merge_key = child.merge_key
        _validate_order(patch_list or [], order, merge_key)
        if found_orig and not found_patch:
            merged = orig_list
        elif found_patch and not found_orig:
            merged, _ = _remove_directives(patch_list)
        elif found_orig and found_patch:
            if child.smp_strategy == "merge":
                merged, orig_list = _merge_list_view(orig_list, patch_list, child, False)
            else:
                merged = patch_list
        else:
            continue
        assert isinstance(merged, list)
        kind = _element_kind(orig_list or [], patch_list or [])
        in_order, server_only = _partition(merged, order, merge_key, kind)
        original[field] = _normalize_order(
            in_order, server_only, order, orig_list or [], merge_key, kind
        )
        patch.pop(field, None)


def _validate_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    if not order or not patch_list:
        return
    if merge_key:
        items = [
            v for v in patch_list if not (isinstance(v, dict) and v.get(DIRECTIVE) == "delete")
        ]
    else:
        items = patch_list
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        item = items[pi]
        if isinstance(item, dict) and DIRECTIVE in item:
            pi += 1
            continue
        if _same_item(item, order[oi], merge_key):
            pi += 1
        oi += 1
    if pi < len(items) and oi >= len(order):
        raise BadPatchError(
            f"The order in patch list:\n{_fmt(patch_list)}\n doesn't match {SET_ORDER} list:\n{_fmt(order)}\n"
        )


def _same_item(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return bool(left == right)
    if not isinstance(left, dict) or not isinstance(right, dict):
        raise BadPatchError("expected a map in a list with a merge key")
    if merge_key not in left:
        raise _no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _no_merge_key(right, merge_key)
    return bool(left[merge_key] == right[merge_key])


def _ident(item: Any, merge_key: str, kind: str) -> Any:
    if kind == "map":
        return _hashable(item.get(merge_key)) if isinstance(item, dict) else None
    return _hashable(item)


def _hashable(v: Any) -> Any:
    if isinstance(v, dict | list):
        return orjson.dumps(v, option=orjson.OPT_SORT_KEYS)
    if isinstance(v, bool):
        return ("b", v)
    return v


def _partition(
    items: list[Any], by: list[Any], merge_key: str, kind: str
) -> tuple[list[Any], list[Any]]:
    if kind == "map":
        for v in items:
            if not isinstance(v, dict):
                raise BadPatchError(f"expected a map, but received a {type(v).__name__}")
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
    wanted = {_ident(v, merge_key, kind) for v in by}
    inside, outside = [], []
    for v in items:
        (inside if _ident(v, merge_key, kind) in wanted else outside).append(v)
    return inside, outside


def _index(order: list[Any], merge_key: str, kind: str) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for i, v in enumerate(order):
        out.setdefault(_ident(v, merge_key, kind), i)
    return out


def _sort_by(items: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    deletes: list[Any] = []
    if kind == "map":
        for lst in (items, order):
            for v in lst:
                if not isinstance(v, dict) or merge_key not in v:
                    raise _no_merge_key(v, merge_key)
        deletes = [v for v in items if v.get(DIRECTIVE) == "delete"]
        items = [v for v in items if v.get(DIRECTIVE) != "delete"]
    pos = _index(order, merge_key, kind)
    big = len(order)
    ranked = sorted(items, key=lambda v: pos.get(_ident(v, merge_key, kind), big))
    return ranked + deletes


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: str,
) -> list[Any]:
    """Patch items in patch order, server-only items in live order, then the
    two interleaved by live order where both are known (kube-apiserver's
    ``normalizeElementOrder``/``mergeSortedSlice``)."""
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    left = _sort_by(server_only, server_order, merge_key, kind)
    pos = _index(server_order, merge_key, kind)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = pos.get(_ident(left[i], merge_key, kind), -1)
            ri = pos.get(_ident(right[j], merge_key, kind), -1)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _merge_list(
    original: list[Any], patch: list[Any], node: Node, is_delete_list: bool
) -> list[Any]:
    return _merge_list_view(original, patch, node, is_delete_list)[0]


def _merge_list_view(
    original: list[Any], patch: list[Any], node: Node, is_delete_list: bool
) -> tuple[list[Any], list[Any]]:
    """Merge two lists; also return how the caller's copy of ``original``
    looks afterwards. kube-apiserver deletes and appends in place on the live
    list's backing array, and ``$setElementOrder`` then orders server-only
    items by that array, so the view is emulated to give the same order."""
    if not original and not patch:
        return original, original
    kind = _element_kind(original, patch)
    merge_key = node.merge_key
    if kind != "map":
        if is_delete_list:
            drop = {_hashable(v) for v in patch}
            return [v for v in original if _hashable(v) not in drop], original
        merged: list[Any] = []
        seen: set[Any] = set()
        for v in original + patch:
            h = _hashable(v)
            if h not in seen:
                seen.add(h)
                merged.append(v)
        in_patch, server_only = _partition(merged, patch, "", kind)
        return _normalize_order(in_patch, server_only, patch, original, "", kind), original
    if not merge_key:
        raise BadPatchError("cannot merge lists without merge key")
    view = list(original)  # the caller's array, mutated as kube-apiserver's is
    backing, n, patch = _special_elements(view, patch, merge_key)
    server_order = backing[:n]
    item_node = node.item()
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        want = _hashable(item[merge_key])
        for idx in range(n):
            cur = backing[idx]
            if not isinstance(cur, dict):
                raise BadPatchError(f"value for key {idx} is not a map")
            if merge_key in cur and _hashable(cur[merge_key]) == want:
                backing[idx] = _merge_map(cur, item, item_node)
                break
        else:
            v, keep = _remove_directives(item)
            if not keep:
                continue
            if n < len(backing):
                backing[n] = v
            else:
                backing = [*backing[:n], v]  # grown: a new array, the view keeps the old one
            n += 1
    merged = backing[:n]
    in_patch, server_only = _partition(merged, patch, merge_key, kind)
    return _normalize_order(in_patch, server_only, patch, server_order, merge_key, kind), view


def _special_elements(
    view: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], int, list[Any]]:
    """Apply ``$patch: delete|replace`` items; return (array, length, plain patch items)."""
    backing, n = view, len(view)
    plain: list[Any] = []
    replace = False
    for item in patch:
        if not isinstance(item, dict):
            raise BadPatchError(f"expected a map, but received a {type(item).__name__}")
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            gone = _hashable(item[merge_key])
            i = 0
            while i < n:
                v = backing[i]
                if isinstance(v, dict) and merge_key in v and _hashable(v[merge_key]) == gone:
                    backing[i : n - 1] = backing[
                        i + 1 : n
                    ]  # in place, as append(s[:i], s[i+1:]...)
                    n -= 1
                else:
                    i += 1
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise BadPatchError("merging lists cannot yet be specified in the patch")
        else:
            raise BadPatchError(f"unknown patch type: {directive} in map: {_fmt(item)}")
    if replace:
        return list(plain), len(plain), []
    return backing, n, plain
