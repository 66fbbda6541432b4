"""Field errors: what is wrong with which field, worded as kube-apiserver words it.

A :class:`FieldError` carries the Status cause reason (``FieldValueRequired``,
``FieldValueInvalid``…), the field path and the bad value; ``str()`` gives
the ``spec.containers[0].image: Required value`` line kubectl prints under
``is invalid``. Built by ``api.validation``, ``api.rules``, ``api.crd`` and
``api.updates``; the apiserver turns them into a 422 Status (``body()`` is a
cause's message, ``invalid_message`` the Status message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# Cause reasons (metav1.CauseType) and their texts (field.ErrorType.String()).
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
NOT_FOUND = "FieldValueNotFound"

_TEXT = {
    REQUIRED: "Required value",
    INVALID: "Invalid value",
    TYPE_INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    NOT_FOUND: "Not found",
}
_NO_VALUE = frozenset({REQUIRED, FORBIDDEN, TOO_LONG})


class GoRepr(str):
    """A bad value already in Go's %#v form (printed as is, not quoted)."""


def go_value(value: Any) -> str:
    """A value as Go's field errors print it (%q for strings, %v for scalars)."""
    if isinstance(value, GoRepr):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: ``type`` is the cause reason (FieldValueInvalid…),
    ``field`` the path (``spec.containers[0].image``)."""

    type: str
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        """The message without the field (a Status cause's ``message``)."""
        text = _TEXT.get(self.type, "Invalid value")
        out = text if self.type in _NO_VALUE else f"{text}: {go_value(self.value)}"
        return f"{out}: {self.detail}" if self.detail else out

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, path, "", detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, path, value, detail)


def not_supported(path: str, value: Any, allowed: list[Any]) -> FieldError:
    detail = "supported values: " + ", ".join(go_value(v) for v in allowed)
    return FieldError(NOT_SUPPORTED, path, value, detail)


def too_long(path: str, value: Any, max_length: int) -> FieldError:
    unit = "byte" if max_length == 1 else "bytes"
    return FieldError(TOO_LONG, path, value, f"may not be more than {max_length} {unit}")


def invalid_message(qualified_kind: str, name: str, errors: list[FieldError]) -> str:
    """kube-apiserver's 422 message: ``Pod "x" is invalid: [a, b]`` (no
    brackets for one error). ``qualified_kind`` is e.g. ``Deployment.apps``."""
    parts = [str(e) for e in errors]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return f'{qualified_kind} "{name}" is invalid: {joined}'
