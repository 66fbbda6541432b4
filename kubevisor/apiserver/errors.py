"""Errors of the apiserver layer: each one is a ``kind: Status`` response.

    ApiError(code, reason, message, details)   rendered by the app as Status JSON
      built by the constructors below, worded as kube-apiserver words them:
      not_found · already_exists · conflict · invalid · bad_request ·
      forbidden · unauthorized · method_not_allowed · unsupported_media_type ·
      not_acceptable · too_large · expired · gone · internal · timeout

Handlers raise these; the app's top level turns them into a response.
Store errors are translated where they enter the handlers
(``raise ... from exc``). Any other exception reaching the top is logged
and answered with a 500 InternalError Status.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """An HTTP error with a metav1.Status body."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> JSON:
    d: JSON = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
        _details(name, group, resource),
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(resource: str, name: str, group: str = "", why: str = "") -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        _details(name, group, resource),
    )


def invalid(kind: str, name: str, causes: list[JSON], group: str = "") -> ApiError:
    """422 Invalid. ``causes``: [{"reason": "FieldValueRequired", "message":
    "Required value", "field": "spec.x"}]; the message joins them as kube does."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(name, group, kind)
    details["causes"] = causes
    return ApiError(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {joined}'
                    if group else f'{kind} "{name}" is invalid: {joined}', details)


def field_cause(field: str, reason: str, message: str) -> JSON:
    return {"reason": reason, "message": message, "field": field}


def required(field: str) -> JSON:
    return field_cause(field, "FieldValueRequired", "Required value")


def invalid_value(field: str, value: Any, detail: str) -> JSON:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return field_cause(field, "FieldValueInvalid", f"Invalid value: {shown}: {detail}")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(resource: str, name: str, why: str, group: str = "") -> ApiError:
    return ApiError(
        403, "Forbidden", f'{_qualified(resource, group)} "{name}" is forbidden: {why}',
        _details(name, group, resource),
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
        {},
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
    )


def not_acceptable() -> ApiError:
    return ApiError(
        406, "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml, "
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", message)
