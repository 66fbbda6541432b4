"""A read-only HTTP stub serving discovery and OpenAPI v3 from a Registry.

Lets the api tests run the real kubectl (``explain``, validation checks)
against the documents ``kubevisor.api.openapi`` generates, without the
apiserver package. Used by test_openapi_kubectl.py only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import orjson

from kubevisor.api import openapi, openapiv2
from kubevisor.api.kinds import Registry


def _resource_list(registry: Registry, group: str, version: str) -> dict:
    resources = []
    for rt in registry:
        if rt.group != group or rt.version != version:
            continue
        resources.append({"name": rt.plural, "singularName": rt.singular,
                          "namespaced": rt.namespaced, "kind": rt.kind, "verbs": list(rt.verbs),
                          "shortNames": list(rt.short_names), "categories": list(rt.categories)})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def _route(registry: Registry, path: str, serve_v2: bool) -> dict | bytes | None:
    groups = registry.group_versions()
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        items = []
        for group, versions in groups.items():
            if not group:
                continue
            vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            items.append({"name": group, "versions": vs, "preferredVersion": vs[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}
    if path == "/openapi/v3":
        return openapi.openapi_v3_index(registry)
    if path.startswith("/openapi/v3/"):
        parts = path.removeprefix("/openapi/v3/").split("/")
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        found = openapi.openapi_v3_document_bytes(registry, group, version)
        return found[0] if found else None
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) == 2:
        return _resource_list(registry, "", parts[1])
    if parts[0] == "apis" and len(parts) == 3:
        return _resource_list(registry, parts[1], parts[2])
    if path == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions":
        return {"kind": "CustomResourceDefinitionList", "apiVersion": "apiextensions.k8s.io/v1",
                "metadata": {"resourceVersion": "1"}, "items": []}
    if path == "/openapi/v2" and serve_v2:
        return openapiv2.openapi_v2_protobuf(registry)
    if path == "/version":
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}
    return None


@contextmanager
def serve(registry: Registry, writes: list[str] | None = None, *,
          serve_v2: bool = True) -> Iterator[str]:
    """Serve ``registry`` on a free loopback port; yields the base URL.
    POST stores the object and echoes it (201); PUT/PATCH echo the stored
    object; each write is appended to ``writes`` as
    ``"<METHOD> <path?query> <content-type> <body>"``."""
    objects: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def _write(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if writes is not None:
                writes.append(f"{self.command} {self.path} {self.headers.get('Content-Type')} "
                              f"{raw.decode()}")
            path = urlsplit(self.path).path
            if self.command == "POST":
                name = orjson.loads(raw)["metadata"]["name"]
                objects[f"{path}/{name}"] = raw
            else:
                raw = objects.get(path, raw)
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_POST = do_PUT = do_PATCH = _write

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            body = objects.get(path) or _route(registry, path, serve_v2)
            if body is None:
                self.send_response(404)
                raw = orjson.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "reason": "NotFound", "code": 404})
            else:
                self.send_response(200)
                raw = body if isinstance(body, bytes) else orjson.dumps(body)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
