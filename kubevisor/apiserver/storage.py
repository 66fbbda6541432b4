"""How API objects sit in the store: key layout and byte encoding.

Keys: ``/registry/<group or "core">/<plural>/<namespace>/<name>`` for
namespaced kinds, ``/registry/<group>/<plural>/<name>`` for cluster-scoped
ones (the group/plural pair, not the version, so every served version of a
CRD shares its objects). Values: the object's JSON with ``metadata`` as the
first key and without ``metadata.resourceVersion``, which is the key's
mod revision and is put back on read. Because ``metadata`` comes first, the
hot read paths (get, unfiltered list, unfiltered watch) splice the
resourceVersion into the stored bytes without parsing them. Callers: the
resource, watch and CRD handlers.
"""

from __future__ import annotations

from typing import Any

import orjson

from kubevisor.api.kinds import ResourceType
from kubevisor.store.base import KeyValue

JSON = dict[str, Any]

ROOT = "/registry/"
_HEAD = b'{"metadata":{'


def type_prefix(rt: ResourceType) -> str:
    return f"{ROOT}{rt.group or 'core'}/{rt.plural}/"


def prefix(rt: ResourceType, namespace: str = "") -> str:
    """The key prefix of every object of ``rt`` (in ``namespace`` if given)."""
    base = type_prefix(rt)
    return f"{base}{namespace}/" if rt.namespaced and namespace else base


def key(rt: ResourceType, namespace: str, name: str) -> str:
    base = type_prefix(rt)
    return f"{base}{namespace}/{name}" if rt.namespaced else f"{base}{name}"


def encode(obj: JSON, rt: ResourceType | None = None, *,
           previous: KeyValue | None = None) -> bytes:
    """Stored bytes of ``obj`` (metadata first, no resourceVersion). Does not
    modify ``obj``. A kind with a converter is stored in its storage
    version; ``previous`` (the stored value being replaced) keeps the fields
    the request's version cannot express."""
    if rt is not None and rt.converter is not None and \
            rt.converter.storage_version != rt.version:
        before = orjson.loads(previous.value) if previous is not None else None
        obj = rt.converter.convert(obj, rt.converter.storage_version, previous=before)
    meta = obj["metadata"]
    if "resourceVersion" in meta:
        meta = {k: v for k, v in meta.items() if k != "resourceVersion"}
    return orjson.dumps({"metadata": meta, **{k: v for k, v in obj.items() if k != "metadata"}})


def decode(kv: KeyValue, *, revision: int | None = None) -> JSON:
    """The object at ``kv`` with its resourceVersion (``revision`` overrides
    the kv's mod revision, e.g. the revision of a delete)."""
    obj: JSON = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision if revision is None else revision)
    return obj


def raw(kv: KeyValue, *, revision: int | None = None) -> bytes:
    """The JSON bytes of the object at ``kv`` with its resourceVersion, without
    a parse when the stored bytes have the usual shape."""
    value = kv.value
    rv = kv.mod_revision if revision is None else revision
    if value.startswith(_HEAD) and value[13:14] != b"}":
        return b'{"metadata":{"resourceVersion":"%d",%s' % (rv, value[13:])
    obj = orjson.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
    return orjson.dumps(obj)


def served_as(data: bytes, rt: ResourceType) -> bytes:
    """``data`` with the apiVersion of the version being served. Custom
    resources may be stored under another version of their CRD (conversion
    strategy None: only apiVersion changes; a kind's converter: converted);
    built-ins have one version."""
    if rt.converter is not None:
        obj = orjson.loads(data)
        if obj.get("apiVersion") == rt.group_version:
            return data
        return orjson.dumps(rt.converter.convert(obj, rt.version))
    if not rt.custom:
        return data
    # Only the top-level apiVersion counts (managedFields entries name versions too).
    obj = orjson.loads(data)
    if obj.get("apiVersion") == rt.group_version:
        return data
    obj["apiVersion"] = rt.group_version
    return orjson.dumps(obj)


def fix_version(obj: JSON, rt: ResourceType) -> JSON:
    """The decoded-object form of :func:`served_as` (in place)."""
    if rt.converter is not None:
        if obj.get("apiVersion") != rt.group_version:
            converted = rt.converter.convert(obj, rt.version)
            obj.clear()
            obj.update(converted)
        return obj
    if rt.custom:
        obj["apiVersion"] = rt.group_version
    return obj
