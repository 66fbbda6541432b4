"""Admission of a new object state: field validation mode, pruning of unknown
fields, defaults, schema validation, managedFields.

Called by the resource handlers on every create, update and patch after the
object's server-owned metadata is set and before it is written. Unknown
fields are rejected (``fieldValidation=Strict``, kubectl's default), warned
about (``Warn``, the server's default) or silently dropped (``Ignore``), and
in the last two cases pruned from the object as Go decoding and CRD pruning
do. Validation errors become a 422 Invalid Status.
"""

from __future__ import annotations

import re
from typing import Any

from kubevisor.api import validation
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors
from kubevisor.apiserver.http import Request

JSON = dict[str, Any]

_PART = re.compile(r"([^\[\]]*)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


def field_validation_mode(req: Request) -> str:
    mode = req.query.get("fieldValidation", "") or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f'fieldValidation parameter unsupported: {mode!r}. Supported values are '
            '"Ignore", "Warn", "Strict"'.replace("'", '"', 2)
        )
    return mode


def check_unknown_fields(rt: ResourceType, obj: JSON, req: Request) -> None:
    """Apply the request's field validation mode to ``obj`` (pruning it)."""
    mode = field_validation_mode(req)
    # metadata is always ObjectMeta, whatever a CRD's root schema says of it
    unknown = validation.unknown_fields_of(rt, obj)
    if not unknown:
        return
    if mode == "Strict":
        raise errors.bad_request(
            "strict decoding error: " + ", ".join(f"unknown field {go_quote(p)}" for p in unknown)
        )
    if mode == "Warn":
        req.warnings.extend(f"unknown field {go_quote(p)}" for p in unknown)
    for path in unknown:
        _remove(obj, path)


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """``text`` quoted as Go's %q does (control characters escaped), as
    kube-apiserver prints field names in its messages."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _steps(path: str) -> list[str | int] | None:
    """The keys and indexes of a field path (``a.b[0].c``; an empty key, as
    in ``metadata.``, is a key too); None when the path cannot be read back."""
    steps: list[str | int] = []
    for part in path.split("."):
        match = _PART.fullmatch(part)
        if match is None:
            return None
        key, indexes = match.groups()
        if key or not indexes:
            steps.append(key)
        steps.extend(int(i) for i in _INDEX.findall(indexes))
    return steps


def _remove(obj: Any, path: str) -> None:
    steps = _steps(path)
    if not steps:
        return  # a path this simple parser cannot follow (keys with "[" or "]")
    cur = obj
    for step in steps[:-1]:
        try:
            cur = cur[step]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(cur, dict) and isinstance(steps[-1], str):
        cur.pop(steps[-1], None)


def default_and_validate(rt: ResourceType, obj: JSON, old: JSON | None = None) -> None:
    """Fill server-side defaults, then validate (with ``old``, also what an
    update may not change: immutable fields); 422 Invalid on errors."""
    if rt.defaulter is not None:
        rt.defaulter(obj)
    errs = validation.validate(rt, obj) if old is None else validation.validate_update(rt, old, obj)
    if errs:
        raise invalid_error(rt, obj, errs)


def invalid_error(rt: ResourceType, obj: JSON, errs: list[validation.FieldError]) -> errors.ApiError:
    name = (obj.get("metadata") or {}).get("name") or ""
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errs]
    return errors.invalid(rt.kind, name, causes, rt.group)
