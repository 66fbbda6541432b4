"""The apiserver as one plain ASGI callable: :func:`create_app`.

Per request: health and version endpoints, authentication (bearer tokens,
bootstrap tokens, client certificates),
body size limit, path parsing (``routing``), output negotiation, then the
handler for discovery, OpenAPI or a resource verb. Every failure leaves as
a ``kind: Status`` response; an unexpected exception is logged and answered
with 500 InternalError, and the server keeps serving. The lifespan starts
the store, loads CRDs into the registry and keeps them in sync from a store
watch, and compacts old revisions periodically. Called by uvicorn (through
``apiserver.server``) and by tests through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from kubevisor.apiserver import (
    binding,
    clientcerts,
    crds,
    csr,
    discovery,
    errors,
    listing,
    namespaces,
    nodeproxy,
    openapi,
    patching,
    resources,
    services,
    subresources,
    vmconsole,
    watch,
)
from kubevisor.apiserver.bootstrap import BootstrapTokens, anonymous_allowed
from kubevisor.apiserver.config import ServerConfig, UserInfo
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import (
    JSON_OUT,
    Output,
    Request,
    Response,
    StreamResponse,
    negotiate,
    parse_query,
    status_response,
)
from kubevisor.apiserver.patch import PatchError
from kubevisor.apiserver.routing import RequestInfo, parse_path

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

log = logging.getLogger(__name__)

_PUBLIC = frozenset(("/healthz", "/livez", "/readyz", "/version", "/healthz/", "/livez/",
                     "/readyz/", "/version/"))
ANONYMOUS = UserInfo(name="system:anonymous", groups=("system:unauthenticated",))


def create_app(config: ServerConfig) -> ASGIApp:
    """The ASGI application serving ``config.registry`` from ``config.store``."""
    return App(Context(config=config, store=config.store, registry=config.registry))


class App:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.bootstrap_tokens = BootstrapTokens(ctx.store)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- lifespan ----------------------------------------------------------

    async def startup(self) -> None:
        """Start the store and the background loops (idempotent)."""
        if self._started:
            return
        self._started = True
        await self.ctx.store.start()
        revision = await crds.load(self.ctx)
        self._tasks.append(asyncio.create_task(crds.sync_loop(self.ctx, revision),
                                               name="crd-sync"))
        revision = await namespaces.load(self.ctx)
        self._tasks.append(asyncio.create_task(namespaces.sync_loop(self.ctx, revision),
                                               name="namespace-sync"))
        self._tasks.extend(await services.start(self.ctx))
        revision = await self.bootstrap_tokens.load()
        self._tasks.append(asyncio.create_task(self.bootstrap_tokens.sync_loop(revision),
                                               name="bootstrap-token-sync"))
        self._tasks.append(asyncio.create_task(self._compact_loop(), name="compaction"))
        self.ctx.ready = True

    async def shutdown(self) -> None:
        self.ctx.ready = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        self._started = False

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("apiserver startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _compact_loop(self) -> None:
        """Every interval, compact up to the revision seen one interval ago
        (history stays for at least one interval, as kube-apiserver keeps 5 min)."""
        interval = self.ctx.config.compaction_interval_seconds
        previous = 0
        while True:
            await asyncio.sleep(interval)
            try:
                if previous:
                    await self.ctx.store.compact(previous)
                previous = await self.ctx.store.current_revision()
            except Exception:
                log.exception("compaction failed")

    # -- http --------------------------------------------------------------

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        out = JSON_OUT
        try:
            headers: dict[str, str] = {}
            for k, v in scope["headers"]:
                name = k.decode("latin-1").lower()
                value = v.decode("latin-1")
                headers[name] = f"{headers[name]},{value}" if name in headers else value
            raw_query = scope.get("query_string", b"")
            req = Request(method=scope["method"], path=scope["path"],
                          query=parse_query(raw_query), headers=headers, raw_query=raw_query)
            resp = await self._public(req)
            if resp is None:
                req.user = self._authenticate(req, scope)
                if not req.path.startswith("/openapi/") and req.path.rstrip("/") not in (
                        "/api", "/apis"):
                    out = negotiate(headers.get("accept", ""))
                req.body = await self._read_body(receive, headers)
                resp = await self._route(req, out)
        except errors.ApiError as exc:
            resp = status_response(exc, out)
        except PatchError as exc:
            resp = Response(exc.code, orjson.dumps(exc.status()))
        except Exception as exc:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            resp = status_response(errors.internal(type(exc).__name__ + ": " + str(exc)))
        if isinstance(resp, StreamResponse):
            await self._stream(resp, receive, send, req)
            return
        raw_headers = [(b"content-type", resp.content_type.encode()),
                       (b"content-length", str(len(resp.body)).encode()),
                       (b"cache-control", b"no-cache, private"), *resp.headers]
        if "req" in locals():
            raw_headers.extend(_warning_headers(req))
        await send({"type": "http.response.start", "status": resp.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A WebSocket upgrade: only pods/exec, attach and portforward take
        one; they are relayed to the pod's node agent (``nodeproxy``); and a
        VirtualMachineWebConsoleRequest's ``console``, opened by its ticket
        (``vmconsole``). A refusal before the upgrade is a ``kind: Status``
        HTTP answer."""
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers") or []}
            req = Request(method="GET", path=scope["path"], query={}, headers=headers)
            info = parse_path(req.path)
            if vmconsole.is_console(info):  # the ticket is the credential
                await vmconsole.relay(self.ctx, info, parse_query(scope.get("query_string", b"")),
                                      scope, receive, send)
                return
            for proto in scope.get("subprotocols") or []:
                prefix = "base64url.bearer.authorization.k8s.io."
                if proto.startswith(prefix) and "authorization" not in headers:
                    headers["authorization"] = "Bearer " + _b64url(proto[len(prefix):])
            req.user = self._authenticate(req, scope)
            if (info.kind != "resource" or info.group or info.resource != "pods"
                    or not info.namespace or not info.name
                    or info.subresource not in ("exec", "attach", "portforward")):
                raise errors.path_not_found()
            query = parse_query(scope.get("query_string", b""))
            url, client = await nodeproxy.target(self.ctx, info.namespace, info.name,
                                                 info.subresource, query.get("container", ""))
            await nodeproxy.relay_websocket(url, client, scope, receive, send)
        except errors.ApiError as exc:
            await _refuse_websocket(scope, send, exc)
        except Exception as exc:
            log.exception("unhandled error serving websocket %s", scope.get("path"))
            await _refuse_websocket(scope, send, errors.internal(f"{type(exc).__name__}: {exc}"))

    async def _stream(self, resp: StreamResponse, receive: Any, send: Any, req: Request) -> None:
        # No content-length: the server sends the body chunked.
        headers = [(b"content-type", resp.content_type.encode()),
                   (b"cache-control", b"no-cache, private"), *resp.headers,
                   *_warning_headers(req)]
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})

        async def pump() -> None:
            async for chunk in resp.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def disconnected() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        pump_task = asyncio.create_task(pump())
        gone_task = asyncio.create_task(disconnected())
        try:
            done, _ = await asyncio.wait({pump_task, gone_task},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump_task, gone_task):
                task.cancel()
            for task in (pump_task, gone_task):
                with contextlib.suppress(BaseException):
                    await task
            aclose = getattr(resp.chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(BaseException):
                    await aclose()
        if pump_task in done and pump_task.exception() is None:
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _read_body(self, receive: Any, headers: dict[str, str]) -> bytes:
        limit = self.ctx.config.max_body_bytes
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise errors.too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    def _authenticate(self, req: Request, scope: dict[str, Any] | None = None) -> UserInfo:
        """A known bearer token (the admin's first), a bootstrap token
        (:mod:`.bootstrap`), else a verified client certificate
        (:mod:`.clientcerts`); 401 otherwise. Authorization (RBAC) is not
        enforced yet: any authenticated user may do anything."""
        tokens = self.ctx.config.tokens
        if not tokens:
            return ANONYMOUS
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer":
            token = token.strip()
            user = tokens.get(token) or self.bootstrap_tokens.authenticate(token)
            if user is not None:
                return user
            raise errors.unauthorized()  # a bad token fails even with a certificate
        user = clientcerts.user_of_scope(scope)
        if user is not None:
            return user
        if not auth and anonymous_allowed(req.method, req.path):
            return ANONYMOUS
        raise errors.unauthorized()

    async def _public(self, req: Request) -> Response | None:
        path = req.path
        if path not in _PUBLIC:
            return None
        if req.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed()
        path = path.rstrip("/")
        if path == "/version":
            return Response(200, orjson.dumps(_version(self.ctx.config.git_version)))
        if path == "/readyz" and not self.ctx.ready:
            return Response(503, b"[-]store not ready\nreadyz check failed", "text/plain")
        return Response(200, b"ok", "text/plain; charset=utf-8")

    # -- routing -----------------------------------------------------------

    async def _route(self, req: Request, out: Output) -> Response | StreamResponse:
        info = parse_path(req.path)
        ctx = self.ctx
        if info.kind == "resource":
            return await self._resource(req, info, out)
        if req.method not in ("GET", "HEAD"):
            if info.kind == "other" and not req.path.startswith("/openapi"):
                raise errors.path_not_found()
            raise errors.method_not_allowed()
        body: bytes | None = None
        if info.kind == "api-root":
            agg = discovery.wants_aggregated(req.headers.get("accept", ""))
            if agg is not None:
                return Response(200, discovery.aggregated(ctx, legacy=info.legacy, version=agg),
                                discovery.aggregated_content_type(agg),
                                headers=[(b"vary", b"Accept")])
            body = discovery.api_versions(ctx) if info.legacy else discovery.group_list(ctx)
        elif info.kind == "group":
            body = discovery.group(ctx, info.group)
        elif info.kind == "group-version":
            if info.legacy and info.version != "v1":
                body = None
            else:
                body = discovery.resource_list(ctx, info.group, info.version)
        elif req.path.startswith("/openapi/"):
            return openapi.serve(ctx, req)
        elif req.path == "/":
            body = orjson.dumps({"paths": sorted(_root_paths(ctx))})
        if body is None:
            raise errors.path_not_found()
        return Response(200, body)

    async def _resource(self, req: Request, info: RequestInfo, out: Output) -> Response | StreamResponse:
        ctx = self.ctx
        rt = ctx.resource(info.group, info.version, info.resource)
        if rt is None and info.legacy and info.resource == "bindings" and info.namespace and not info.name:
            return await binding.bind_collection(ctx, req, info, out)
        if rt is None or not rt.served or (info.legacy and info.group):
            raise errors.path_not_found()
        if not rt.namespaced:
            if info.namespace and not (rt.group == "" and rt.kind == "Namespace"):
                raise errors.path_not_found()
            info = _without_namespace(info)
        elif info.name and not info.namespace:
            raise errors.path_not_found()
        method = req.method
        verbs = rt.verbs
        sub = info.subresource
        if sub:
            if not info.name:
                raise errors.path_not_found()
            if sub == "status" and rt.has_status:
                if method == "GET":
                    return await listing.get(ctx, req, info, rt, out)
                if method == "PUT":
                    return await resources.update(ctx, req, info, rt, out, status_only=True)
                if method == "PATCH":
                    return await patching.patch(ctx, req, info, rt, out, status_only=True)
                raise errors.method_not_allowed()
            if sub == "scale" and rt.scale is not None:
                return await subresources.scale(ctx, req, info, rt, out)
            if sub == "finalize" and rt.group == "" and rt.kind == "Namespace":
                return await subresources.finalize(ctx, req, info, rt, out)
            if sub == "approval" and (rt.group, rt.kind) == csr.KIND:
                return await csr.approval(ctx, req, info, rt, out)
            if vmconsole.is_console(info):
                raise errors.bad_request("Upgrade request required")
            if rt.group == "" and rt.kind == "Pod":
                if sub == "binding":
                    return await binding.bind_subresource(ctx, req, info, rt, out)
                if sub == "log":
                    if method != "GET":
                        raise errors.method_not_allowed()
                    return await nodeproxy.pod_log(ctx, req, info.namespace, info.name,
                                                   req.raw_query)
                if sub in nodeproxy.STREAM_PATHS:
                    if method not in ("GET", "POST"):
                        raise errors.method_not_allowed()
                    raise errors.bad_request("Upgrade request required")
            raise errors.path_not_found()
        if info.watch or (method == "GET" and req.flag("watch")):
            if method != "GET" or "watch" not in verbs:
                raise errors.method_not_allowed()
            if info.name:
                query = dict(req.query)
                extra = f"metadata.name={info.name}"
                query["fieldSelector"] = (f"{query['fieldSelector']},{extra}"
                                          if query.get("fieldSelector") else extra)
                req.query = query
                info = _with_name(info, "")
            return await watch.serve(ctx, req, info, rt, out)
        if not info.name:
            if method == "GET" and "list" in verbs:
                return await listing.list_(ctx, req, info, rt, out)
            if method == "POST" and "create" in verbs:
                return await resources.create(ctx, req, info, rt, out)
            if method == "DELETE" and "deletecollection" in verbs:
                return await resources.delete_collection(ctx, req, info, rt, out)
            raise errors.method_not_allowed()
        if method == "GET" and "get" in verbs:
            return await listing.get(ctx, req, info, rt, out)
        if method == "PUT" and "update" in verbs:
            return await resources.update(ctx, req, info, rt, out)
        if method == "PATCH" and "patch" in verbs:
            return await patching.patch(ctx, req, info, rt, out)
        if method == "DELETE" and "delete" in verbs:
            return await resources.delete(ctx, req, info, rt, out)
        raise errors.method_not_allowed()


def _b64url(text: str) -> str:
    import base64

    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except ValueError:
        return ""


async def _refuse_websocket(scope: dict[str, Any], send: Any, exc: errors.ApiError) -> None:
    """Answer an upgrade with the Status (ASGI's websocket.http.response
    extension, which uvicorn offers), else close before accepting (403)."""
    with contextlib.suppress(Exception):
        if "websocket.http.response" in (scope.get("extensions") or {}):
            body = orjson.dumps(exc.status())
            await send({"type": "websocket.http.response.start", "status": exc.code,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


def _without_namespace(info: RequestInfo) -> RequestInfo:
    return RequestInfo(info.kind, info.group, info.version, "", info.resource, info.name,
                       info.subresource, info.watch, info.legacy)


def _with_name(info: RequestInfo, name: str) -> RequestInfo:
    return RequestInfo(info.kind, info.group, info.version, info.namespace, info.resource, name,
                       info.subresource, info.watch, info.legacy)


def _warning_headers(req: Request) -> list[tuple[bytes, bytes]]:
    out = []
    for text in req.warnings:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        value = f'299 - "{escaped}"'.encode("ascii", "backslashreplace")
        # A header value may not carry control characters (CR/LF would split it).
        value = bytes(b if b >= 0x20 and b != 0x7F else 0x3F for b in value)
        out.append((b"warning", value))
    return out


def _version(git_version: str) -> dict[str, str]:
    import platform

    core = git_version.lstrip("v").split("-")[0].split(".")
    return {
        "major": core[0] if core else "1",
        "minor": core[1] if len(core) > 1 else "32",
        "gitVersion": git_version,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython",
        "platform": f"{platform.system().lower()}/{platform.machine()}",
    }


def _root_paths(ctx: Context) -> set[str]:
    paths = {"/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version",
             "/openapi/v3"}
    for group, versions in ctx.registry.group_versions().items():
        if group:
            paths.add(f"/apis/{group}")
            paths.update(f"/apis/{group}/{v}" for v in versions)
    return paths
