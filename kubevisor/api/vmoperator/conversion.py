"""Conversion of VM Operator objects between API versions, as upstream's
conversion webhooks do it, through the hub (storage) version v1alpha6.

Up to the hub: fields an older version names differently are moved to
their v1alpha6 place. Down from the hub: moved back, then everything the
target version does not declare is pruned. A write in an older version
keeps what that version cannot express: fields of the stored object that
a round trip through the older version would lose are put back
(``previous``), so a v1alpha3 client updating a VM does not erase its
v1alpha6-only fields. Called by the apiserver through
``ResourceType.converter`` (reads: stored -> requested version; writes:
request version -> storage version).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kubevisor.api.kinds import JSON


@dataclass(frozen=True, slots=True)
class Move:
    """A field an older version keeps at ``old`` and the hub at ``new``;
    both are dotted paths below ``under`` (a list of objects if it ends in
    ``[]``, the object root if empty)."""

    old: str
    new: str
    under: str = ""


def _containers(obj: Any, under: str) -> list[JSON]:
    """The objects ``under`` names in ``obj`` (each item of a list path)."""
    if not under:
        return [obj] if isinstance(obj, dict) else []
    nodes: list[Any] = [obj]
    for step in under.split("."):
        many = step.endswith("[]")
        name = step.removesuffix("[]")
        found: list[Any] = []
        for node in nodes:
            value = node.get(name) if isinstance(node, dict) else None
            if many and isinstance(value, list):
                found.extend(value)
            elif not many and value is not None:
                found.append(value)
        nodes = found
    return [n for n in nodes if isinstance(n, dict)]


def _pop(node: JSON, path: str) -> Any:
    *parents, last = path.split(".")
    for step in parents:
        node = node.get(step)
        if not isinstance(node, dict):
            return None
    return node.pop(last, None)


def _put(node: JSON, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for step in parents:
        child = node.get(step)
        if not isinstance(child, dict):
            child = node[step] = {}
        node = child
    node[last] = value


def _prune_empty(node: JSON, path: str) -> None:
    """Drop the objects along ``path`` that a move left empty."""
    parents = path.split(".")[:-1]
    chain = [node]
    for step in parents:
        child = chain[-1].get(step)
        if not isinstance(child, dict):
            return
        chain.append(child)
    for parent, step in zip(reversed(chain[:-1]), reversed(parents), strict=True):
        if parent.get(step) == {}:
            del parent[step]
        else:
            return


def _apply_moves(obj: JSON, moves: tuple[Move, ...], *, up: bool) -> None:
    for move in moves:
        src, dst = (move.old, move.new) if up else (move.new, move.old)
        for node in _containers(obj, move.under):
            value = _pop(node, src)
            if value is not None:
                _put(node, dst, value)
                _prune_empty(node, src)


def prune(value: Any, schema: JSON) -> Any:
    """``value`` with only what ``schema`` declares (as CRD pruning does)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        add = schema.get("additionalProperties")
        if props is None:
            if isinstance(add, dict):
                return {k: prune(v, add) for k, v in value.items()}
            return value if add is True or schema.get("type") != "object" else {}
        return {k: prune(v, props[k]) for k, v in value.items() if k in props}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"]) for v in value]
    return value


def _prune_root(obj: JSON, schema: JSON) -> JSON:
    props = schema.get("properties") or {}
    out: JSON = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            out[key] = value
        elif key in props:
            out[key] = prune(value, props[key])
    return out


# --- keeping what an older version cannot say ---------------------------------
#
# A patch is ("set", value): the whole field was lost; ("dict", {key: patch});
# or ("list", [(match, patch)]) where match is ("name", value) or ("index", i).

_Patch = tuple[str, Any]


def _lost(full: Any, kept: Any) -> _Patch | None:
    if isinstance(full, dict) and isinstance(kept, dict):
        out: dict[str, _Patch] = {}
        for key, value in full.items():
            if key not in kept:
                out[key] = ("set", value)
                continue
            sub = _lost(value, kept[key])
            if sub is not None:
                out[key] = sub
        return ("dict", out) if out else None
    if isinstance(full, list) and isinstance(kept, list) and len(full) == len(kept):
        items = []
        for i, (a, b) in enumerate(zip(full, kept, strict=True)):
            sub = _lost(a, b)
            if sub is None:
                continue
            name = a.get("name") if isinstance(a, dict) else None
            items.append((("name", name) if isinstance(name, str) else ("index", i), sub))
        return ("list", items) if items else None
    return None


def _restore(target: Any, patch: _Patch) -> None:
    how, body = patch
    if how == "dict" and isinstance(target, dict):
        for key, sub in body.items():
            if sub[0] == "set":
                target.setdefault(key, copy.deepcopy(sub[1]))
            elif key in target:
                _restore(target[key], sub)
    elif how == "list" and isinstance(target, list):
        for (by, which), sub in body:
            if by == "name":
                match = [t for t in target if isinstance(t, dict) and t.get("name") == which]
                if match:
                    _restore(match[0], sub)
            elif which < len(target):
                _restore(target[which], sub)


# --- the converter ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Converter:
    """Converts one kind's objects between its served versions (the
    ``kinds.Converter`` protocol)."""

    group: str
    storage_version: str
    schema: Callable[[str], JSON]
    # version -> the moves between that version and the hub
    moves: dict[str, tuple[Move, ...]]
    #: The storage version's defaults, applied to an object converted up to
    #: it (kube-apiserver defaults a custom resource at its storage version
    #: when it reads it from etcd: the stored object then always says so).
    hub_defaulter: Callable[[JSON], None] | None = None

    def _up(self, obj: JSON, version: str) -> JSON:
        _apply_moves(obj, self.moves.get(version, ()), up=True)
        obj["apiVersion"] = f"{self.group}/{self.storage_version}"
        return obj

    def _down(self, hub: JSON, version: str) -> JSON:
        _apply_moves(hub, self.moves.get(version, ()), up=False)
        out = _prune_root(hub, self.schema(version))
        out["apiVersion"] = f"{self.group}/{version}"
        return out

    def convert(self, obj: JSON, version: str, *, previous: JSON | None = None) -> JSON:
        """``obj`` (of any served version, per its apiVersion) as
        ``version``; a new object, ``obj`` is left alone. ``previous``: the
        stored (hub version) object being replaced, whose fields the
        source version cannot express are kept."""
        source = str(obj.get("apiVersion", "")).rpartition("/")[2] or self.storage_version
        work: JSON = orjson.loads(orjson.dumps(obj))
        hub = work if source == self.storage_version else self._up(work, source)
        if previous is not None and source != self.storage_version:
            before: JSON = orjson.loads(orjson.dumps(previous))
            through = self._up(self._down(orjson.loads(orjson.dumps(before)), source), source)
            patch = _lost({k: v for k, v in before.items() if k != "metadata"},
                          {k: v for k, v in through.items() if k != "metadata"})
            if patch is not None:
                _restore(hub, patch)
        if source != self.storage_version and self.hub_defaulter is not None:
            self.hub_defaulter(hub)
        if version == self.storage_version:
            hub["apiVersion"] = f"{self.group}/{version}"
            return hub
        return self._down(hub, version)
