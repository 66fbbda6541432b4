"""Errors of the stream server, each answered as a ``kind: Status``.

    StreamError(code, reason, message)   an HTTP answer with a Status body
      built by: bad_request · unauthorized · not_found · internal

Raised by the request handlers (:mod:`~kubevisor.node.streams.server`,
:mod:`~kubevisor.node.streams.targets`, :mod:`~kubevisor.node.streams.logs`)
before a response or WebSocket has started; runtime failures are
translated into these where they enter (``raise ... from exc``). Once a
WebSocket is open, failures travel on its error channel instead
(:mod:`~kubevisor.node.streams.channels`).
"""

from __future__ import annotations

from typing import Any

import orjson

JSON = dict[str, Any]

_REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 500: "InternalError"}


class StreamError(Exception):
    """A refusal with a metav1.Status body."""

    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "")

    def status(self) -> JSON:
        return status_body("Failure", code=self.code, reason=self.reason, message=self.message)

    def body(self) -> bytes:
        return orjson.dumps(self.status())


def status_body(status: str, *, code: int = 0, reason: str = "", message: str = "",
                details: JSON | None = None) -> JSON:
    """A metav1.Status as kube serialises it (empty fields left out)."""
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    if code:
        body["code"] = code
    return body


def bad_request(message: str) -> StreamError:
    return StreamError(400, message)


def unauthorized() -> StreamError:
    return StreamError(401, "Unauthorized")


def not_found(message: str) -> StreamError:
    return StreamError(404, message)


def internal(message: str) -> StreamError:
    return StreamError(500, message)
