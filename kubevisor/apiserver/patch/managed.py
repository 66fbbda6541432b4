"""``metadata.managedFields``: who owns which fields, kept up to date on
every write as kube-apiserver's field manager does.

The apiserver calls :func:`update_managed_fields` after building the object
it is about to store on create, update and non-apply patch (and
:func:`kubevisor.apiserver.patch.ssa.apply` does the apply side). The
fields a write changed (added or modified) go to the writing manager and are
taken from every other manager; removed fields leave every set. Entries are
keyed by manager, operation, apiVersion (Update only) and subresource;
entries of one key merge; entry times are whole seconds
(RFC 3339 ``Z``); at most 10 Update entries are kept, older ones folded into
``ancient-changes``. ``metadata`` identity fields (name, uid,
resourceVersion, ...) are never owned. By default ``status`` is not tracked
for writes to the main resource and ``spec`` not for the status subresource
(kube-apiserver's "reset fields"); pass ``reset_fields`` to change that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kubevisor.apiserver.patch import fieldpath as fp
from kubevisor.apiserver.patch.errors import InvalidApplyError, depth_guarded
from kubevisor.apiserver.patch.fieldpath import Trie
from kubevisor.apiserver.patch.schema_walk import Node, compile_schema
from kubevisor.apiserver.patch.structured import compare

JSON = dict[str, Any]

MAX_UPDATE_MANAGERS = 10
FIELD_MANAGER_MAX_LENGTH = 128
ANCIENT_CHANGES = "ancient-changes"

STRIP_SET: Trie = fp.from_paths(
    ("f:apiVersion",),
    ("f:kind",),
    ("f:metadata",),
    ("f:metadata", "f:name"),
    ("f:metadata", "f:namespace"),
    ("f:metadata", "f:creationTimestamp"),
    ("f:metadata", "f:selfLink"),
    ("f:metadata", "f:uid"),
    ("f:metadata", "f:clusterName"),
    ("f:metadata", "f:generation"),
    ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:resourceVersion"),
)


@dataclass(slots=True)
class Entry:
    """One decoded managedFields entry."""

    manager: str
    operation: str  # Apply | Update
    api_version: str
    subresource: str
    fields: Trie
    time: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return manager_key(self.manager, self.operation, self.api_version, self.subresource)

    @property
    def applied(self) -> bool:
        return self.operation == "Apply"


@lru_cache(maxsize=4096)
def manager_key(manager: str, operation: str, api_version: str, subresource: str) -> str:
    """kube-apiserver's manager identity (apiVersion only counts for Update).
    Memoized: every write computes a few, from a handful of distinct values."""
    out: dict[str, str] = {"manager": manager, "operation": operation}
    if operation != "Apply" and api_version:
        out["apiVersion"] = api_version
    if subresource:
        out["subresource"] = subresource
    return fp.go_json(out)


def manager_text(entry: Entry) -> str:
    """How conflict messages name a manager: ``"kubectl" using apps/v1``."""
    text = f'"{entry.manager}"'
    if entry.subresource:
        text += f' with subresource "{entry.subresource}"'
    if entry.operation == "Update":
        # kube-apiserver names the manager by its identity, which has no time
        text += f" using {entry.api_version}"
    return text


def normalize_time(now: str) -> str:
    """RFC 3339 in whole seconds with ``Z``: ``2024-05-01T10:00:00Z``."""
    text = now.strip()
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    if "." in text:
        head, _, tail = text.partition(".")
        zone = ""
        for i, ch in enumerate(tail):
            if not ch.isdigit():
                zone = tail[i:]
                break
        text = head + (zone or "Z")
    if not text.endswith("Z") and len(text) == 19:
        text += "Z"
    return text


def manager_or_user_agent(field_manager: str | None, user_agent: str | None) -> str:
    """The manager name for a write: the ``fieldManager`` query parameter, else
    the User-Agent up to its first ``/`` (``kubectl/v1.32.0 (...)`` → ``kubectl``),
    printable characters only, at most 128 bytes, as kube-apiserver does."""
    if field_manager:
        return field_manager
    return _user_agent_manager(user_agent)


@lru_cache(maxsize=1024)
def _user_agent_manager(user_agent: str | None) -> str:
    """The manager name of a User-Agent (memoized: clients send a few)."""
    head = (user_agent or "").split("/", 1)[0]
    out: list[str] = []
    size = 0
    for ch in head:
        if not ch.isprintable():
            continue
        n = len(ch.encode())
        if size + n > FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(ch)
        size += n
    return "".join(out)


# -- decode / encode ---------------------------------------------------------------


def decode_entries(raw: Any) -> dict[str, Entry]:
    """Managers by identity; raises :class:`InvalidApplyError` when malformed."""
    out: dict[str, Entry] = {}
    if raw is None:
        return out
    if not isinstance(raw, list):
        raise InvalidApplyError("metadata.managedFields must be a list")
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidApplyError(f"managed fields entry {i} is not an object")
        op = item.get("operation")
        if op not in ("Apply", "Update"):
            raise InvalidApplyError("operation must be `Apply` or `Update`")
        api_version = item.get("apiVersion") or ""
        if not api_version:
            raise InvalidApplyError("apiVersion must not be empty")
        ftype = item.get("fieldsType", "")
        if ftype != "FieldsV1":
            if not ftype:
                raise InvalidApplyError(f"missing fieldsType in managed fields entry {i}")
            raise InvalidApplyError(f'invalid fieldsType "{ftype}" in managed fields entry {i}')
        fields_v1 = item.get("fieldsV1")
        trie = fp.decode(fields_v1) if fields_v1 is not None else {}
        trie.pop(fp.SELF, None)
        entry = Entry(
            manager=str(item.get("manager", "")),
            operation=op,
            api_version=api_version,
            subresource=str(item.get("subresource", "")),
            fields=trie,
            time=item.get("time"),
        )
        out[entry.key] = entry
    return out


def _seconds(entry: Entry) -> str:
    return entry.time or ""


def encode_entries(managers: Mapping[str, Entry]) -> list[JSON]:
    """The managedFields list, in kube-apiserver's order."""
    entries = sorted(
        managers.values(),
        key=lambda e: (e.operation, _seconds(e), e.manager, e.api_version, e.subresource),
    )
    out: list[JSON] = []
    for e in entries:
        item: JSON = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version}
        if e.time:
            item["time"] = e.time
        item["fieldsType"] = "FieldsV1"
        item["fieldsV1"] = fp.encode(e.fields)
        if e.subresource:
            item["subresource"] = e.subresource
        out.append(item)
    return out


# -- helpers shared with apply -------------------------------------------------------


def reset_trie(subresource: str, reset_fields: Iterable[str] | None) -> Trie:
    """The fields a write to this (sub)resource does not track."""
    if reset_fields is None:
        reset_fields = (
            ("spec",) if subresource == "status" else ("status",) if not subresource else ()
        )
    paths = [tuple("f:" + part for part in p.strip(".").split(".") if part) for p in reset_fields]
    return fp.from_paths(*[p for p in paths if p])


def without_managed_fields(obj: JSON | None) -> JSON:
    """A shallow copy of ``obj`` whose metadata lacks managedFields."""
    if not obj:
        return {}
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    out = dict(obj)
    out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _is_reset(raw: Any) -> bool:
    """``managedFields: []`` or ``[{}]`` in a request clears tracking."""
    if isinstance(raw, list):
        return len(raw) == 0 or (len(raw) == 1 and raw[0] == {})
    return False


def _managed_of(obj: JSON | None) -> Any:
    if not obj:
        return None
    meta = obj.get("metadata")
    return meta.get("managedFields") if isinstance(meta, dict) else None


def _has_uid(obj: JSON | None) -> bool:
    meta = (obj or {}).get("metadata")
    return isinstance(meta, dict) and bool(meta.get("uid"))


def cap_update_managers(managers: dict[str, Entry], limit: int = MAX_UPDATE_MANAGERS) -> None:
    """Fold the oldest Update entries into ``ancient-changes`` (in place)."""
    updaters = [k for k, e in managers.items() if not e.applied]
    if len(updaters) <= limit:
        return
    updaters.sort(key=lambda k: (_seconds(managers[k]), k))
    first_of_version: dict[str, str] = {}
    length = len(updaters)
    for key in updaters:
        if length <= limit:
            break
        entry = managers[key]
        bucket_key = manager_key(ANCIENT_CHANGES, "Update", entry.api_version, "")
        first = first_of_version.get(entry.api_version)
        if first is None:
            first_of_version[entry.api_version] = key
            continue
        if bucket_key not in managers:
            prev = managers.pop(first)
            managers[bucket_key] = Entry(
                ANCIENT_CHANGES, "Update", prev.api_version, "", prev.fields, prev.time
            )
        bucket = managers[bucket_key]
        bucket.fields = fp.union(entry.fields, bucket.fields)
        bucket.time = entry.time
        del managers[key]
        length -= 1


def record_update(
    old: JSON,
    new: JSON,
    managers: dict[str, Entry],
    *,
    manager: str,
    operation: str,
    api_version: str,
    subresource: str,
    now: str,
    node: Node,
    reset: Trie,
) -> None:
    """Give the fields that changed from ``old`` to ``new`` to ``manager``
    (in place on ``managers``; ``old``/``new`` without managedFields)."""
    cmp = compare(old, new, node)
    added = fp.recursive_difference(cmp.added, reset) if reset else cmp.added
    modified = fp.recursive_difference(cmp.modified, reset) if reset else cmp.modified
    removed = fp.recursive_difference(cmp.removed, reset) if reset else cmp.removed
    changed = fp.union(modified, added)
    key = manager_key(manager or "unknown", operation, api_version, subresource)
    for k in list(managers):
        entry = managers[k]
        rest = fp.difference(fp.difference(entry.fields, changed), removed)
        if rest is not entry.fields:
            entry.fields = rest
        if not rest and k != key:
            del managers[k]
    mine = fp.difference(changed, STRIP_SET)
    previous = managers.get(key)
    if mine:
        if previous is not None:
            previous.fields = fp.union(mine, previous.fields)
            previous.time = now
        else:
            managers[key] = Entry(
                manager or "unknown", operation, api_version, subresource, mine, now
            )
    elif previous is not None and not previous.fields:
        del managers[key]


@depth_guarded
def update_managed_fields(
    old: JSON | None,
    new: JSON,
    *,
    manager: str,
    operation: str = "Update",
    api_version: str,
    subresource: str = "",
    now: str,
    schema: dict[str, Any] | None,
    defs: Mapping[str, dict[str, Any]] | None,
    reset_fields: Iterable[str] | None = None,
) -> list[JSON]:
    """The managedFields to store with ``new`` after a create (``old`` None)
    or an update/patch of ``old`` by ``manager``.

    ``new`` may carry managedFields from the request: a valid non-empty list
    replaces the stored one, ``[]`` clears tracking. An object stored
    without managedFields stays untracked, as in kube-apiserver.
    """
    now = normalize_time(now)
    raw_new = None if subresource else _managed_of(new)
    managers: dict[str, Entry]
    if raw_new is not None and _is_reset(raw_new):
        managers = {}
    else:
        managers = {}
        if raw_new:
            try:
                managers = decode_entries(raw_new)
            except InvalidApplyError:
                managers = {}
        if not managers:
            try:
                managers = decode_entries(_managed_of(old))
            except InvalidApplyError:
                managers = {}
    if not managers and _has_uid(old):
        return []  # untracked objects stay untracked
    node = compile_schema(schema, defs)
    record_update(
        without_managed_fields(old),
        without_managed_fields(new),
        managers,
        manager=manager,
        operation=operation,
        api_version=api_version,
        subresource=subresource,
        now=now,
        node=node,
        reset=reset_trie(subresource, reset_fields),
    )
    cap_update_managers(managers)
    return encode_entries(managers)
