"""Serves ``/openapi/v3`` and ``/openapi/v3/<group-version path>`` from
``api.openapi``, with kube-apiserver's caching headers: a document asked
for with its ``?hash=`` is immutable (cached for a year), otherwise it
carries an ETag. ``/openapi/v2`` is a document without definitions (JSON,
or gnostic protobuf as kubectl asks for it): kubectl v1.32 takes its schemas
from v3 and only falls back to v2 for kinds v3 lacks (``List``, unknown
kinds), where "no definition" makes it skip client-side validation as with
kube-apiserver, leaving the checks to the server. Called by the app.
"""

from __future__ import annotations

import orjson

from kubevisor.api import openapi as api_openapi
from kubevisor.apiserver import errors
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Request, Response

_IMMUTABLE = (b"cache-control", b"public, immutable, max-age=31536000")




def _proto_string(field: int, value: bytes) -> bytes:
    assert len(value) < 128
    return bytes([field << 3 | 2, len(value)]) + value


def _v2(req: Request, git_version: str) -> Response:
    title, version = b"Kubernetes", git_version.encode()[:100]
    if "protobuf" in req.headers.get("accept", ""):
        info = _proto_string(1, title) + _proto_string(2, version)
        body = _proto_string(1, b"2.0") + _proto_string(2, info)  # Document.swagger, .info
        # Go clients cannot parse the "@" of the proto media type in a response.
        return Response(200, body, "application/octet-stream")
    return Response(200, orjson.dumps({"swagger": "2.0", "info": {
        "title": title.decode(), "version": version.decode()}, "paths": {}, "definitions": {}}))


def serve(ctx: Context, req: Request) -> Response:
    path = req.path.rstrip("/")
    if path == "/openapi/v2":
        return _v2(req, ctx.config.git_version)
    if path == "/openapi/v3":
        body = orjson.dumps(api_openapi.openapi_v3_index(ctx.registry))
        return Response(200, body)
    prefix = "/openapi/v3/"
    if not path.startswith(prefix):
        raise errors.path_not_found()
    parts = path[len(prefix):].split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        raise errors.path_not_found()
    found = api_openapi.openapi_v3_document_bytes(ctx.registry, group, version)
    if found is None:
        raise errors.path_not_found()
    raw, digest = found
    etag = f'"{digest}"'.encode()
    wanted = req.query.get("hash")
    if wanted and wanted != digest:
        # A stale hash: point the client at the current document, as kube does.
        location = f"{path}?hash={digest}".encode()
        return Response(301, b"", headers=[(b"location", location), (b"etag", etag)])
    headers = [(b"etag", etag)]
    if wanted:
        headers.append(_IMMUTABLE)
    if req.headers.get("if-none-match", "").encode() == etag:
        return Response(304, b"", headers=headers)
    return Response(200, raw, headers=headers)
