"""Pure object semantics of create, update and delete, as kube-apiserver's
generic registry applies them (BeforeCreate / BeforeUpdate / BeforeDelete).

A request body is checked against the URL (apiVersion, kind, name,
namespace), then given or stripped of the server-owned metadata: uid,
creationTimestamp, generation (bumped when anything but metadata and
status changes), deletionTimestamp. Delete options (body or query) are
parsed and turned into the finalizers a delete puts on the object.
No I/O; called by the resource handlers.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from kubevisor.api import meta as metautil
from kubevisor.api.formats import is_int64, parse_int64
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors, strategy

JSON = dict[str, Any]

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATE_LEN = 5
_MAX_GENERATE_PREFIX = 63 - _GENERATE_LEN

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"

_rand = random.SystemRandom()
_fast = random.Random()


def check_body(rt: ResourceType, body: Any, *, expect_kind: str = "") -> JSON:
    """``body`` is an object of ``rt``'s kind and version, or omits them (then
    the URL's kind and version are its defaults, as kube-apiserver decodes)."""
    if not isinstance(body, dict):
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {expect_kind or rt.kind})"
        )
    kind = body.get("kind")
    api_version = body.get("apiVersion")
    want_kind = expect_kind or rt.kind
    if kind is not None and not isinstance(kind, str):
        raise errors.bad_request("Object 'Kind' is not a string")
    if api_version is not None and not isinstance(api_version, str):
        raise errors.bad_request("Object 'apiVersion' is not a string")
    want_version = "autoscaling/v1" if expect_kind == "Scale" else rt.group_version
    if api_version and api_version != want_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({want_version})"
        )
    if kind and kind != want_kind:
        raise errors.bad_request(
            f"the object provided is unrecognized (must be of type {want_kind}): "
            f'kind "{kind}" does not match'
        )
    meta = body.get("metadata")
    if meta is None:
        body["metadata"] = {}
    elif not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    body["apiVersion"] = want_version
    body["kind"] = want_kind
    return body


def check_namespace(rt: ResourceType, obj: JSON, url_namespace: str) -> None:
    meta = obj["metadata"]
    if not rt.namespaced:
        meta.pop("namespace", None)
        return
    given = meta.get("namespace")
    if given and given != url_namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    meta["namespace"] = url_namespace


def new_uid() -> str:
    """A random (version 4) UUID; os.urandom per call is slow, uids need not be secret."""
    return str(uuid.UUID(int=_fast.getrandbits(128), version=4))


def generated_name(prefix: str) -> str:
    prefix = prefix[:_MAX_GENERATE_PREFIX]
    return prefix + "".join(_rand.choice(_GENERATE_ALPHABET) for _ in range(_GENERATE_LEN))


def prepare_create(rt: ResourceType, obj: JSON, now: str) -> None:
    """Server-owned metadata of a new object (``obj`` is changed in place)."""
    meta = obj["metadata"]
    if not meta.get("name"):
        gen = meta.get("generateName")
        if gen and isinstance(gen, str):
            meta["name"] = generated_name(gen)
        else:
            raise errors.invalid(rt.kind, "", [errors.field_cause(
                "metadata.name", "FieldValueRequired",
                "Required value: name or generateName is required")], rt.group)
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = now
    meta.pop("resourceVersion", None)
    meta.pop("deletionTimestamp", None)
    meta.pop("deletionGracePeriodSeconds", None)
    meta.pop("selfLink", None)
    if strategy.tracks_generation(rt):
        meta["generation"] = 1
    else:
        meta.pop("generation", None)


def check_url_name(obj: JSON, url_name: str) -> None:
    name = obj["metadata"].get("name")
    if name and name != url_name:
        raise errors.bad_request(
            f"the name of the object ({name}) does not match the name on the URL ({url_name})"
        )
    obj["metadata"]["name"] = url_name


def spec_changed(new: JSON, old: JSON) -> bool:
    """Anything besides metadata and status differs (generation bumps)."""
    keys = (set(new) | set(old)) - {"metadata", "status", "apiVersion", "kind"}
    return any(new.get(k) != old.get(k) for k in keys)


def prepare_update(rt: ResourceType, new: JSON, old: JSON, *, status_only: bool = False) -> JSON:
    """The object to store for an update of ``old`` by ``new``: immutable
    metadata carried over, status kept (main resource) or only status taken
    (status subresource). The generation is bumped by :func:`bump_generation`
    once defaults are in (an update that only leaves out defaulted fields
    changes nothing)."""
    if status_only:
        merged = dict(old)
        if "status" in new:
            merged["status"] = new["status"]
        else:
            merged.pop("status", None)
        meta = dict(old["metadata"])
        for k in ("managedFields",):
            if k in new["metadata"]:
                meta[k] = new["metadata"][k]
        merged["metadata"] = meta
        new = merged
    else:
        if rt.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        ometa, nmeta = old["metadata"], new["metadata"]
        if nmeta.get("uid") and nmeta["uid"] != ometa.get("uid"):
            raise errors.invalid(rt.kind, ometa["name"], [errors.field_cause(
                "metadata.uid", "FieldValueInvalid",
                f'Invalid value: "{nmeta["uid"]}": field is immutable')], rt.group)
        if ometa.get("deletionTimestamp"):
            had = set(ometa.get("finalizers") or ())
            added = [f for f in nmeta.get("finalizers") or () if f not in had]
            if added:
                shown = ", ".join(f'"{f}"' for f in added)
                raise errors.invalid(rt.kind, ometa["name"], [errors.field_cause(
                    "metadata.finalizers", "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers []string{{{shown}}}")], rt.group)
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation"):
            if k in ometa:
                nmeta[k] = ometa[k]
            else:
                nmeta.pop(k, None)
        nmeta.pop("selfLink", None)
    new["metadata"].pop("resourceVersion", None)
    return new


def bump_generation(rt: ResourceType, new: JSON, old: JSON) -> None:
    """metadata.generation + 1 when the (defaulted) spec changed."""
    if strategy.tracks_generation(rt) and spec_changed(new, old):
        new["metadata"]["generation"] = int(old["metadata"].get("generation") or 0) + 1


def same_object(new: JSON, old: JSON) -> bool:
    """An update that changes nothing (kube-apiserver then skips the write)."""
    if new.keys() != old.keys():
        return False
    for k, v in new.items():
        if k == "metadata":
            om = old["metadata"]
            nm = v
            if {a for a in nm if a != "resourceVersion"} != {a for a in om if a != "resourceVersion"}:
                return False
            if any(nm[a] != om[a] for a in nm if a != "resourceVersion"):
                return False
        elif old[k] != v:
            return False
    return True


# --- delete ---------------------------------------------------------------


def delete_options(body: Any, query: dict[str, str]) -> JSON:
    """DeleteOptions from the body (if any) overlaid with query parameters."""
    opts: JSON = {}
    if body is not None:
        if not isinstance(body, dict):
            raise errors.bad_request("the DeleteOptions in the request body are not an object")
        opts = dict(body)
        _check_delete_option_types(opts)
    if "gracePeriodSeconds" in query:
        try:
            opts["gracePeriodSeconds"] = parse_int64(query["gracePeriodSeconds"])
        except ValueError as exc:
            raise errors.bad_request(
                f"invalid gracePeriodSeconds: {query['gracePeriodSeconds']!r}") from exc
    if "propagationPolicy" in query:
        opts["propagationPolicy"] = query["propagationPolicy"]
    if "orphanDependents" in query:
        opts["orphanDependents"] = query["orphanDependents"].lower() == "true"
    if "dryRun" in query:
        opts["dryRun"] = [query["dryRun"]]
    policy = opts.get("propagationPolicy")
    if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
        raise errors.invalid("DeleteOptions", "", [errors.field_cause(
            "propagationPolicy", "FieldValueNotSupported",
            f'Unsupported value: "{policy}": supported values: "Foreground", "Background", '
            '"Orphan", "nil"')])
    if policy is not None and opts.get("orphanDependents") is not None:
        raise errors.invalid("DeleteOptions", "", [errors.field_cause(
            "propagationPolicy", "FieldValueInvalid",
            'Invalid value: "' + policy + '": orphanDependents and deletionPropagation cannot '
            "be both set")])
    return opts


#: DeleteOptions fields and the Go types kube-apiserver decodes them into.
_DELETE_OPTION_TYPES: dict[str, tuple[str, Any]] = {
    "gracePeriodSeconds": ("int64", is_int64),
    "orphanDependents": ("bool", lambda v: isinstance(v, bool)),
    "propagationPolicy": ("string", lambda v: isinstance(v, str)),
    "dryRun": ("[]string", lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)),
    "preconditions": ("v1.Preconditions", lambda v: isinstance(v, dict) and all(
        isinstance(v.get(k), str | None) for k in ("uid", "resourceVersion"))),
}


_JSON_KINDS = {bool: "bool", int: "number", float: "number", str: "string", list: "array",
               dict: "object"}


def _check_delete_option_types(opts: JSON) -> None:
    """400 for a DeleteOptions field of the wrong JSON type, worded as the
    Go decoder words it; null means unset."""
    for field, (go_type, ok) in _DELETE_OPTION_TYPES.items():
        value = opts.get(field)
        if value is None:
            opts.pop(field, None)
        elif not ok(value):
            raise errors.bad_request(
                f"json: cannot unmarshal {_JSON_KINDS.get(type(value), 'value')} into Go struct field "
                f"DeleteOptions.{field} of type {go_type}")


def check_preconditions(rt: ResourceType, opts: JSON, obj: JSON) -> None:
    pre = opts.get("preconditions") or {}
    meta = obj["metadata"]
    name = meta["name"]
    uid, rv = pre.get("uid"), pre.get("resourceVersion")
    if uid and uid != meta.get("uid"):
        raise errors.conflict(rt.plural, name, rt.group,
                              f"Precondition failed: UID in precondition: {uid}, "
                              f"UID in object meta: {meta.get('uid')}")
    if rv and rv != meta.get("resourceVersion"):
        raise errors.conflict(rt.plural, name, rt.group,
                              f"Precondition failed: ResourceVersion in precondition: {rv}, "
                              f"ResourceVersion in object meta: {meta.get('resourceVersion')}")


def finalizers_for_delete(opts: JSON, finalizers: list[str]) -> list[str]:
    """The object's finalizers after a delete with ``opts`` (the garbage
    collector's orphan/foregroundDeletion finalizers per propagationPolicy)."""
    policy = opts.get("propagationPolicy")
    orphan_flag = opts.get("orphanDependents")
    if policy is None and orphan_flag is None:
        return finalizers
    orphan = policy == "Orphan" or (policy is None and orphan_flag is True)
    foreground = policy == "Foreground"
    out = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    if orphan:
        out.append(ORPHAN)
    if foreground:
        out.append(FOREGROUND)
    return out


def _after(now: str, seconds: int) -> datetime:
    """``now`` plus ``seconds``, the last representable moment when an
    int64 grace period reaches past year 9999."""
    moment = metautil.parse_rfc3339(now)
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(microsecond=0, tzinfo=moment.tzinfo)


def mark_deleted(obj: JSON, now: str, grace: int) -> None:
    meta = obj["metadata"]
    if not meta.get("deletionTimestamp"):
        if grace > 0:
            meta["deletionTimestamp"] = metautil.rfc3339(_after(now, grace))
        else:
            meta["deletionTimestamp"] = now
        meta["deletionGracePeriodSeconds"] = grace


def shorten_grace(obj: JSON, now: str, grace: int) -> bool:
    """A second delete with a shorter grace period of an object already in
    its grace period: the deletion moves earlier (now + grace, if that is
    sooner) and the period shrinks, as kube-apiserver's BeforeDelete does.
    Whether anything changed."""
    meta = obj["metadata"]
    current = meta.get("deletionGracePeriodSeconds")
    if not meta.get("deletionTimestamp") or not isinstance(current, int) or grace >= current:
        return False
    requested = _after(now, grace)
    if requested < metautil.parse_rfc3339(meta["deletionTimestamp"]):
        meta["deletionTimestamp"] = metautil.rfc3339(requested)
    meta["deletionGracePeriodSeconds"] = grace
    return True


def status_success(rt: ResourceType, obj: JSON) -> JSON:
    meta = obj["metadata"]
    details: JSON = {"name": meta["name"]}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    details["uid"] = meta.get("uid", "")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}
