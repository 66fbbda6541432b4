"""Serves ``/openapi/v3`` and ``/openapi/v3/<group-version path>`` from
``api.openapi``, with kube-apiserver's caching headers: a document asked
for with its ``?hash=`` is immutable (cached for a year), otherwise it
carries an ETag. ``/openapi/v2`` is not served (404): kubectl v1.32 uses
v3 for ``explain``, ``apply`` and field validation. Called by the app.
"""

from __future__ import annotations

import orjson

from kubevisor.api import openapi as api_openapi
from kubevisor.apiserver import errors
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Request, Response

_IMMUTABLE = (b"cache-control", b"public, immutable, max-age=31536000")


def serve(ctx: Context, req: Request) -> Response:
    path = req.path.rstrip("/")
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
