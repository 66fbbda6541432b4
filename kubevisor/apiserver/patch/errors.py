"""Errors raised by the patch and apply functions, each able to render itself
as the ``kind: Status`` kube-apiserver returns for the same failure.

    PatchError                  base; ``code``, ``reason``, ``message``
    ├── BadPatchError           400 BadRequest: the patch document is malformed
    │                           (not JSON, not a JSON-patch array, bad directive format)
    ├── PatchNotApplicableError 422 Invalid: a well-formed patch that does not apply
    │                           (JSON-patch ``test`` failed, path missing, list of lists);
    │                           the message is kube-apiserver's generic one, ``detail``
    │                           keeps the underlying reason for logs
    ├── TooManyOperationsError  413 RequestEntityTooLarge: > 10,000 JSON-patch operations
    ├── UnsupportedPatchTypeError 415 UnsupportedMediaType: a PATCH content type the
    │                           resource does not take (strategic merge on custom resources)
    ├── InvalidApplyError       400 BadRequest: an apply configuration that cannot be
    │                           typed (unknown field, wrong type, duplicate list keys,
    │                           managedFields set, wrong apiVersion)
    └── ConflictError           409 Conflict: server-side apply conflicts, one
                                ``FieldManagerConflict`` cause per field

Callers (the apiserver's PATCH handler) catch :class:`PatchError` and send
``exc.status()`` with ``exc.code``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class PatchError(Exception):
    code: int = 400
    reason: str = "BadRequest"

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message

    def causes(self) -> list[dict[str, str]]:
        return []

    def status(self) -> dict[str, Any]:
        """The ``kind: Status`` body kube-apiserver sends for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        causes = self.causes()
        if causes:
            body["details"] = {"causes": causes}
        elif self.code == 422:
            body["details"] = {}
        return body


class BadPatchError(PatchError):
    code = 400
    reason = "BadRequest"


class PatchNotApplicableError(PatchError):
    """kube-apiserver answers these with a generic 422 and keeps the cause out
    of the message (``NewGenericServerResponse``); ``detail`` has it."""

    code = 422
    reason = "Invalid"
    generic = "the server rejected our request due to an error in our request"

    def __init__(self, detail: str) -> None:
        super().__init__(self.generic, detail=detail)


class TooManyOperationsError(PatchError):
    code = 413
    reason = "RequestEntityTooLarge"


class UnsupportedPatchTypeError(PatchError):
    code = 415
    reason = "UnsupportedMediaType"

    def __init__(self, accepted: list[str]) -> None:
        super().__init__(
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted)
        )


class InvalidApplyError(PatchError):
    code = 400
    reason = "BadRequest"


@dataclass(frozen=True, slots=True)
class Conflict:
    """One field another manager owns with a different value."""

    manager: str  # the encoded manager identity (JSON of manager/operation/apiVersion/subresource)
    path: str  # e.g. ".spec.replicas", '.spec.containers[name="nginx"].image'
    manager_text: str  # e.g. '"kubectl-client-side-apply" using apps/v1'
    elements: tuple[str, ...] = field(default=(), compare=False)  # the path as fieldsV1 elements


class ConflictError(PatchError):
    code = 409
    reason = "Conflict"

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        super().__init__(_conflict_message(conflicts))

    def causes(self) -> list[dict[str, str]]:
        return [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {c.manager_text}",
                "field": c.path,
            }
            for c in self.conflicts
        ]


def _conflict_message(conflicts: list[Conflict]) -> str:
    if len(conflicts) == 1:
        c = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {c.manager_text}: {c.path}"
    by_manager: dict[str, list[Conflict]] = {}
    for c in conflicts:
        by_manager.setdefault(c.manager, []).append(c)
    lines: list[str] = []
    for manager in sorted(by_manager):
        group = by_manager[manager]
        lines.append(f"conflicts with {group[0].manager_text}:")
        lines.extend(f"- {c.path}" for c in group)
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def depth_guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn Python's recursion limit (hostile, absurdly nested documents)
    into a 400 instead of a crash. Wraps every public entry point."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except RecursionError as exc:
            raise BadPatchError("the request is nested too deeply") from exc

    return wrapper
