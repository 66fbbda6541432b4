"""Errors of the API client, one tree for every caller (controllers, node
agent, CLI).

::

    ClientError
    ├── KubeconfigError          the kubeconfig is missing, malformed or incomplete
    ├── TransportError           the server could not be reached / the stream broke
    ├── UnknownResourceError     discovery does not serve that apiVersion/kind
    └── ApiError(status)         the server answered with a ``kind: Status`` failure
        ├── BadRequestError      400
        ├── UnauthorizedError    401
        ├── ForbiddenError       403
        ├── NotFoundError        404
        ├── MethodNotAllowedError 405
        ├── ConflictError        409 reason Conflict (stale resourceVersion)
        ├── AlreadyExistsError   409 reason AlreadyExists
        ├── ExpiredError         410 (watch or continue token too old: re-list)
        ├── UnsupportedMediaTypeError 415
        ├── InvalidError         422
        ├── TooManyRequestsError 429
        └── ServerError          5xx

:func:`error_from_status` turns a Status dict (from a response body or a
watch ERROR event) into the right subclass; the client calls it where
HTTP answers enter, and converts httpx errors to :class:`TransportError`
with ``raise ... from``.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class ClientError(Exception):
    """Base of every error the client raises."""


class KubeconfigError(ClientError):
    """The kubeconfig cannot be used."""


class TransportError(ClientError):
    """No HTTP answer: connection refused or reset, TLS failure, timeout."""


class UnknownResourceError(ClientError):
    """Discovery has no resource for this apiVersion and kind (even after a refresh)."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f'no matches for kind "{kind}" in version "{api_version}"')
        self.api_version = api_version
        self.kind = kind


class ApiError(ClientError):
    """The server refused: ``status`` is its ``kind: Status`` object."""

    def __init__(self, status: JSON) -> None:
        self.status = status
        super().__init__(self.message or f"{self.code} {self.reason}")

    @property
    def code(self) -> int:
        return int(self.status.get("code") or 0)

    @property
    def reason(self) -> str:
        return str(self.status.get("reason") or "")

    @property
    def message(self) -> str:
        return str(self.status.get("message") or "")

    @property
    def details(self) -> JSON:
        details = self.status.get("details")
        return details if isinstance(details, dict) else {}


class BadRequestError(ApiError):
    pass


class UnauthorizedError(ApiError):
    pass


class ForbiddenError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class MethodNotAllowedError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class AlreadyExistsError(ApiError):
    pass


class ExpiredError(ApiError):
    pass


class UnsupportedMediaTypeError(ApiError):
    pass


class InvalidError(ApiError):
    pass


class TooManyRequestsError(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    410: ExpiredError,
    415: UnsupportedMediaTypeError,
    422: InvalidError,
    429: TooManyRequestsError,
}


def error_from_status(status: JSON, *, http_code: int = 0) -> ApiError:
    """The ApiError subclass for a Status (its ``code``, else ``http_code``)."""
    status = dict(status)
    code = int(status.get("code") or http_code or 500)
    status.setdefault("kind", "Status")
    status.setdefault("apiVersion", "v1")
    status.setdefault("status", "Failure")
    status["code"] = code
    if code == 409 and status.get("reason") == "AlreadyExists":
        return AlreadyExistsError(status)
    if status.get("reason") in ("Expired", "Gone") or code == 410:
        return ExpiredError(status)
    if code >= 500:
        return ServerError(status)
    return _BY_CODE.get(code, ApiError)(status)
