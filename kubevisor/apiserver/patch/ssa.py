"""Server-side apply (``application/apply-patch+yaml``).

The apiserver's PATCH handler calls :func:`apply` with the live object (or
None to create) and the decoded apply configuration; it returns the object
to store, managedFields included. Semantics are structured-merge-diff's as
kube-apiserver runs them: the configuration is merged into the live object
(keyed lists by key, sets as sets, atomic values replaced); the applier now
owns exactly the fields of its configuration; fields it applied last time
and no longer applies are removed unless another manager owns them; a field
another manager owns whose value the apply would change is a conflict
(:class:`ConflictError`, 409) unless ``force`` takes it. Objects with no
managedFields yet get a ``before-first-apply`` owner for what they hold.
The ``kubectl`` manager may take fields whose value matches its client-side
``last-applied-configuration`` annotation (the client-side to server-side
upgrade), and that annotation is kept in step when present.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubevisor.apiserver.patch import fieldpath as fp
from kubevisor.apiserver.patch.errors import (
    Conflict,
    ConflictError,
    InvalidApplyError,
    depth_guarded,
)
from kubevisor.apiserver.patch.fieldpath import Trie
from kubevisor.apiserver.patch.managed import (
    STRIP_SET,
    Entry,
    cap_update_managers,
    decode_entries,
    encode_entries,
    manager_key,
    manager_text,
    normalize_time,
    record_update,
    reset_trie,
    without_managed_fields,
)
from kubevisor.apiserver.patch.schema_walk import Node, compile_schema
from kubevisor.apiserver.patch.structured import (
    compare,
    ensure_named,
    merge,
    remove_items,
    to_field_set,
)

JSON = dict[str, Any]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
BEFORE_FIRST_APPLY = "before-first-apply"


@depth_guarded
def apply(
    live: JSON | None,
    applied: JSON,
    *,
    manager: str,
    force: bool,
    schema: dict[str, Any] | None,
    defs: Mapping[str, dict[str, Any]] | None,
    now: str,
    api_version: str | None = None,
    subresource: str = "",
    reset_fields: Iterable[str] | None = None,
) -> JSON:
    """Apply ``applied`` as ``manager``; return the new object (inputs untouched).

    ``api_version`` is the group/version being served (defaults to the
    configuration's); a configuration for another version is a 400, as is
    one with managedFields, unknown fields or duplicate list keys.
    """
    if not isinstance(applied, dict):
        raise InvalidApplyError("error decoding YAML: the apply configuration must be an object")
    gv = str(applied.get("apiVersion") or "")
    if api_version is not None and gv != api_version:
        raise InvalidApplyError(
            "Incorrect version specified in apply patch. "
            f"Specified patch version: {gv}, expected: {api_version}"
        )
    version = api_version or gv
    if not version:
        raise InvalidApplyError("invalid object type: the apply configuration has no apiVersion")
    meta = applied.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise InvalidApplyError("metadata.managedFields must be nil")
    now = normalize_time(now)
    node = compile_schema(schema, defs)
    reset = reset_trie(subresource, reset_fields)
    try:
        config_set = to_field_set(applied, node, strict=True)
    except InvalidApplyError as exc:
        raise InvalidApplyError(
            f"failed to create typed patch object ({_describe(applied)}): {exc.message}"
        ) from exc
    if reset:
        config_set = fp.recursive_difference(config_set, reset)

    live_obj = without_managed_fields(live)
    managers = decode_entries(_meta(live).get("managedFields"))
    if not managers and live_obj:
        record_update(
            {},
            live_obj,
            managers,
            manager=BEFORE_FIRST_APPLY,
            operation="Update",
            api_version=version,
            subresource=subresource,
            now=now,
            node=node,
            reset=reset,
        )

    key = manager_key(manager, "Apply", version, subresource)
    try:
        new_obj, new_managers = _apply(
            live_obj,
            applied,
            managers,
            key,
            manager,
            version,
            subresource,
            config_set,
            force,
            node,
            reset,
        )
    except ConflictError as exc:
        if manager != "kubectl" or force:
            raise
        allowed = _allowed_from_last_applied(live_obj, version, node)
        if allowed is None:
            raise
        remaining = [c for c in exc.conflicts if not fp.has(allowed, c.elements)]
        if remaining:
            raise ConflictError(remaining) from None
        new_obj, new_managers = _apply(
            live_obj,
            applied,
            managers,
            key,
            manager,
            version,
            subresource,
            config_set,
            True,
            node,
            reset,
        )

    mine = new_managers.get(key)
    if mine is not None:
        mine.fields = fp.difference(mine.fields, STRIP_SET)
        if not mine.fields:
            del new_managers[key]
    changed = new_obj != live_obj
    if mine is not None and key in new_managers and (changed or not mine.time):
        mine.time = now
    cap_update_managers(new_managers)

    if manager == "kubectl":
        annotations = _dict(_meta(new_obj).get("annotations"))
        if annotations.get(LAST_APPLIED):
            new_obj = _with_last_applied(new_obj, applied)

    result = dict(new_obj)
    result_meta = dict(_meta(result))
    encoded = encode_entries(new_managers)
    if encoded:
        result_meta["managedFields"] = encoded
    else:
        result_meta.pop("managedFields", None)
    result["metadata"] = result_meta
    return result


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _meta(obj: Any) -> dict[str, Any]:
    return _dict(obj.get("metadata")) if isinstance(obj, dict) else {}


def _describe(obj: JSON) -> str:
    meta = _meta(obj)
    assert isinstance(meta, dict)
    gv = str(obj.get("apiVersion", ""))
    group, _, ver = gv.rpartition("/")
    return (
        f"{meta.get('namespace', '') or '<unknown>'}/{meta.get('name', '') or '<unknown>'}; "
        f"{group}/{ver}, Kind={obj.get('kind', '')}"
    )


def _apply(
    live: JSON,
    applied: JSON,
    managers: dict[str, Entry],
    key: str,
    manager: str,
    version: str,
    subresource: str,
    config_set: Trie,
    force: bool,
    node: Node,
    reset: Trie,
) -> tuple[JSON, dict[str, Entry]]:
    managers = {
        k: Entry(e.manager, e.operation, e.api_version, e.subresource, e.fields, e.time)
        for k, e in managers.items()
    }
    merged = merge(live if live else {}, applied, node)
    previous = managers.get(key)
    last_set = previous.fields if previous is not None else {}
    if previous is not None:
        previous.fields = config_set
        previous.api_version = version
    else:
        managers[key] = Entry(manager, "Apply", version, subresource, config_set, None)
    new_obj = _prune(merged, managers, last_set, node)

    cmp = compare(live, new_obj, node)
    added = fp.recursive_difference(cmp.added, reset) if reset else cmp.added
    modified = fp.recursive_difference(cmp.modified, reset) if reset else cmp.modified
    removed = fp.recursive_difference(cmp.removed, reset) if reset else cmp.removed
    changed = fp.union(modified, added)
    conflicts: list[Conflict] = []
    conflict_sets: dict[str, Trie] = {}
    for k, entry in managers.items():
        if k == key:
            continue
        clash = fp.intersection(entry.fields, changed)
        if clash:
            conflict_sets[k] = clash
            text = manager_text(entry)
            for path in fp.members(clash):
                conflicts.append(Conflict(k, fp.path_string(path), text, path))
    if conflicts and not force:
        raise ConflictError(conflicts)
    for k in list(managers):
        if k == key:
            continue
        entry = managers[k]
        rest = entry.fields
        if k in conflict_sets:
            rest = fp.difference(rest, conflict_sets[k])
        if removed:
            rest = fp.difference(rest, removed)
        entry.fields = rest
        if not rest:
            del managers[k]
    return new_obj, managers


def _prune(merged: JSON, managers: Mapping[str, Entry], last_set: Trie, node: Node) -> JSON:
    """Drop what the applier applied last time, applies no more, and nobody
    (itself included, through its new configuration) owns."""
    if not last_set:
        return merged
    owned: Trie = {}
    for entry in managers.values():
        owned = fp.union(owned, entry.fields)
    gone = fp.difference(ensure_named(last_set, node), ensure_named(owned, node))
    if not gone:
        return merged
    out = remove_items(merged, gone, node)
    return out if isinstance(out, dict) else merged


def _allowed_from_last_applied(live: JSON, version: str, node: Node) -> Trie | None:
    """Fields of the last-applied configuration whose value the live object still has."""
    annotations = _dict(_meta(live).get("annotations"))
    text = annotations.get(LAST_APPLIED)
    if not text:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict) or last.get("apiVersion") != version:
        return None
    try:
        last_set = to_field_set(last, node, strict=True)
    except InvalidApplyError:
        return None
    cmp = compare(last, live, node)
    return fp.difference(
        fp.difference(fp.difference(last_set, cmp.modified), cmp.added), cmp.removed
    )


def _with_last_applied(obj: JSON, applied: JSON) -> JSON:
    config = dict(applied)
    meta = dict(_meta(config))
    annotations = dict(_dict(meta.get("annotations")))
    annotations.pop(LAST_APPLIED, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    config["metadata"] = meta
    text = json.dumps(config, separators=(",", ":"), sort_keys=True, ensure_ascii=False) + "\n"
    out = dict(obj)
    out_meta = dict(_meta(out))
    out_meta["annotations"] = {**_dict(out_meta.get("annotations")), LAST_APPLIED: text}
    out["metadata"] = out_meta
    return out
