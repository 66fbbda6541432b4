"""The async Kubernetes API client: CRUD, patch, watch over one keep-alive
HTTP/1.1 connection pool.

A thin layer over :class:`httpx.AsyncClient`. Objects are plain JSON dicts
named by (apiVersion, kind); :class:`~kubevisor.client.discovery.Discovery`
maps them to paths. Failures come back as the
:mod:`kubevisor.client.errors` tree: ``ApiError`` subclasses for a
``kind: Status`` answer, ``TransportError`` when no answer came.
:meth:`Client.watch` is a resumable event stream that re-lists on
``410 Expired``. Callers: controllers (through
:class:`~kubevisor.client.informer.Informer` mostly), the node agent, the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson

from kubevisor.client.discovery import APIResource, Discovery
from kubevisor.client.errors import ExpiredError, TransportError, error_from_status
from kubevisor.client.kubeconfig import load_kubeconfig

JSON = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]
PropagationPolicy = Literal["Background", "Foreground", "Orphan"]
WatchEvent = tuple[str, JSON]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
#: Annotation on the BOOKMARK that :meth:`Client.watch` yields after a (re-)list,
#: as kube-apiserver marks the end of initial events.
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of an object; namespace is "" for cluster-scoped ones."""
    md = obj.get("metadata") or {}
    return (md.get("namespace") or "", md.get("name") or "")


def _compact(params: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in params.items():
        if value is None or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out


@dataclass(frozen=True, slots=True)
class ServerConnection:
    """What :meth:`Client.connection` answers."""

    server: str  # the base URL, e.g. https://127.0.0.1:6443
    authorization: str | None  # the Authorization header value ("Bearer …"), if any
    ssl_context: ssl.SSLContext | None  # None for a plain-HTTP server


class Client:
    """One server, one identity. Use as ``async with Client.from_kubeconfig(p) as c``."""

    def __init__(self, server: str, *, token: str | None = None,
                 verify: ssl.SSLContext | bool = True, namespace: str = "default",
                 timeout: float = 30.0, max_connections: int = 256,
                 max_keepalive_connections: int = 32,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``max_connections`` requests at once (more wait for a free
        connection); ``max_keepalive_connections`` of them stay open between
        requests (a caller that keeps its own concurrency at or below it
        never opens a connection twice)."""
        headers = {"Accept": "application/json", "User-Agent": "kubevisor-client/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.server = server
        self.namespace = namespace
        self._timeout = timeout
        self._authorization = headers.get("Authorization")
        self._own_transport = transport is not None
        # One TLS context, built here so that other transports can share it.
        self._ssl_context: ssl.SSLContext | None = None
        if server.startswith("https"):
            self._ssl_context = verify if isinstance(verify, ssl.SSLContext) \
                else httpx.create_ssl_context(verify=verify)
            verify = self._ssl_context
        self._http = httpx.AsyncClient(
            base_url=server, headers=headers, verify=verify, http2=False,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=min(max_keepalive_connections,
                                                              max_connections)),
            transport=transport,
        )
        # Watches get their own pool: httpcore scans every pooled connection on
        # each request, and dozens of long-lived streams made that the hot spot.
        self._watch_http = httpx.AsyncClient(
            base_url=server, headers=headers, verify=verify, http2=False,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            transport=transport,
        )
        self.discovery = Discovery(self._get_json)

    @classmethod
    def from_kubeconfig(cls, path: Path | str, *, context: str | None = None,
                        **kwargs: Any) -> Client:
        cfg = load_kubeconfig(path, context=context)
        return cls(cfg.server, token=cfg.token, verify=cfg.ssl_context(),
                   namespace=cfg.namespace, **kwargs)

    def connection(self) -> ServerConnection | None:
        """How this client reaches its server, for a caller that speaks HTTP
        itself (the scheduler's lean binding pool): the same server, identity
        and TLS trust; None when requests go through a transport the caller
        of the constructor gave (there may be no socket to open)."""
        if self._own_transport:
            return None
        return ServerConnection(server=self.server, authorization=self._authorization,
                                ssl_context=self._ssl_context)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._watch_http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- raw requests -------------------------------------------------------

    async def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json") -> JSON:
        """One request; the decoded JSON answer, or an ApiError/TransportError."""
        content = None
        headers = {}
        if body is not None:
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        try:
            resp = await self._http.request(method, path, params=_compact(params or {}),
                                            content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        return self._decode(resp)

    @staticmethod
    def _decode(resp: httpx.Response) -> JSON:
        try:
            doc = orjson.loads(resp.content) if resp.content else {}
        except orjson.JSONDecodeError:
            doc = None
        if resp.is_success:
            if not isinstance(doc, dict):
                raise error_from_status({"reason": "InternalError", "message":
                                         f"undecodable answer: {resp.text[:200]!r}"},
                                        http_code=500)
            return doc
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            raise error_from_status(doc, http_code=resp.status_code)
        raise error_from_status({"message": resp.text[:500] or resp.reason_phrase},
                                http_code=resp.status_code)

    async def _get_json(self, path: str) -> JSON:
        return await self.request("GET", path)

    # -- resources ----------------------------------------------------------

    async def resource(self, api_version: str, kind: str) -> APIResource:
        return await self.discovery.resolve(api_version, kind)

    async def _path(self, api_version: str, kind: str, *, namespace: str | None,
                    name: str | None = None, subresource: str | None = None,
                    default_namespace: bool = True) -> str:
        res = await self.resource(api_version, kind)
        if res.namespaced and namespace is None and default_namespace:
            namespace = self.namespace
        return res.path(namespace=namespace, name=name, subresource=subresource)

    async def _object_path(self, obj: Mapping[str, Any], *, subresource: str | None = None,
                           with_name: bool = True, namespace: str | None = None) -> str:
        md = obj.get("metadata") or {}
        return await self._path(
            obj["apiVersion"], obj["kind"], namespace=md.get("namespace") or namespace,
            name=md.get("name") if with_name else None, subresource=subresource,
        )

    # -- verbs --------------------------------------------------------------

    async def get(self, api_version: str, kind: str, name: str, *,
                  namespace: str | None = None, subresource: str | None = None) -> JSON:
        return await self.request("GET", await self._path(
            api_version, kind, namespace=namespace, name=name, subresource=subresource))

    async def list(self, api_version: str, kind: str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = 500, resource_version: str | None = None) -> JSON:
        """All matching objects (pages of ``limit`` followed to the end), as one
        list whose items carry apiVersion and kind."""
        path = await self._path(api_version, kind, namespace=namespace, default_namespace=False)
        params: dict[str, Any] = {"labelSelector": label_selector,
                                  "fieldSelector": field_selector, "limit": limit,
                                  "resourceVersion": resource_version}
        result: JSON | None = None
        while True:
            page = await self.request("GET", path, params=params)
            items = page.get("items") or []
            for item in items:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
            if result is None:
                result = page
                result["items"] = items
            else:
                result["items"].extend(items)
                result["metadata"] = page.get("metadata") or {}
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            params = {"labelSelector": label_selector, "fieldSelector": field_selector,
                      "limit": limit, "continue": token}
        result.setdefault("metadata", {}).pop("continue", None)
        return result

    async def create(self, obj: JSON, *, namespace: str | None = None,
                     field_manager: str | None = None, dry_run: bool = False) -> JSON:
        path = await self._object_path(obj, with_name=False, namespace=namespace)
        return await self.request("POST", path, body=obj, params={
            "fieldManager": field_manager, "dryRun": "All" if dry_run else None})

    async def update(self, obj: JSON, *, field_manager: str | None = None,
                     subresource: str | None = None) -> JSON:
        """PUT; the object's metadata.resourceVersion makes it compare-and-swap."""
        path = await self._object_path(obj, subresource=subresource)
        return await self.request("PUT", path, body=obj,
                                  params={"fieldManager": field_manager})

    async def update_status(self, obj: JSON, *, field_manager: str | None = None) -> JSON:
        return await self.update(obj, field_manager=field_manager, subresource="status")

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, *,
                    namespace: str | None = None, type: PatchType = "merge",
                    field_manager: str | None = None, force: bool | None = None,
                    subresource: str | None = None) -> JSON:
        path = await self._path(api_version, kind, namespace=namespace, name=name,
                                subresource=subresource)
        return await self.request("PATCH", path, body=patch,
                                  content_type=PATCH_CONTENT_TYPES[type],
                                  params={"fieldManager": field_manager, "force": force})

    async def apply(self, obj: JSON, *, field_manager: str, force: bool = False,
                    subresource: str | None = None) -> JSON:
        """Server-side apply of ``obj`` (creates it if absent)."""
        md = obj.get("metadata") or {}
        return await self.patch(obj["apiVersion"], obj["kind"], md["name"], obj,
                                namespace=md.get("namespace"), type="apply",
                                field_manager=field_manager, force=force or None,
                                subresource=subresource)

    async def delete(self, api_version: str, kind: str, name: str, *,
                     namespace: str | None = None,
                     propagation_policy: PropagationPolicy | None = None,
                     preconditions: Mapping[str, str] | None = None,
                     grace_period_seconds: int | None = None) -> JSON:
        """DELETE; answers the Status, or the object if finalizers keep it."""
        path = await self._path(api_version, kind, namespace=namespace, name=name)
        return await self.request("DELETE", path, body=_delete_options(
            propagation_policy, preconditions, grace_period_seconds))

    async def delete_collection(self, api_version: str, kind: str, *,
                                namespace: str | None = None,
                                label_selector: str | None = None,
                                field_selector: str | None = None,
                                propagation_policy: PropagationPolicy | None = None) -> JSON:
        path = await self._path(api_version, kind, namespace=namespace, default_namespace=False)
        return await self.request(
            "DELETE", path, body=_delete_options(propagation_policy, None, None),
            params={"labelSelector": label_selector, "fieldSelector": field_selector})

    # -- watch --------------------------------------------------------------

    async def watch(self, api_version: str, kind: str, *, namespace: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    resource_version: str | None = None, timeout_seconds: int | None = None,
                    reconnect: bool = True) -> AsyncIterator[WatchEvent]:
        """Events ``(type, object)``: ADDED, MODIFIED, DELETED, BOOKMARK.

        Without ``resource_version`` it lists first (ADDED for each object)
        then watches from the list's revision. After every (re-)list it
        yields a BOOKMARK annotated ``k8s.io/initial-events-end: "true"``.
        A dropped connection is resumed from the last resourceVersion seen;
        ``410 Expired`` makes it re-list and yield the difference (ADDED,
        MODIFIED, DELETED) from what it had delivered. With
        ``timeout_seconds`` it ends when the server closes that one watch.
        """
        res = await self.resource(api_version, kind)
        path = res.path(namespace=namespace)
        known: dict[tuple[str, str], JSON] = {}
        select = {"labelSelector": label_selector, "fieldSelector": field_selector}

        async def relist() -> tuple[list[WatchEvent], str]:
            lst = await self.list(api_version, kind, namespace=namespace,
                                  label_selector=label_selector, field_selector=field_selector)
            events: list[WatchEvent] = []
            fresh: dict[tuple[str, str], JSON] = {}
            for item in lst.get("items") or []:
                key = object_key(item)
                fresh[key] = item
                old = known.get(key)
                if old is None:
                    events.append(("ADDED", item))
                elif _rv(old) != _rv(item):
                    events.append(("MODIFIED", item))
            events.extend(("DELETED", old) for key, old in known.items() if key not in fresh)
            known.clear()
            known.update(fresh)
            list_rv = str((lst.get("metadata") or {}).get("resourceVersion") or "")
            events.append(("BOOKMARK", {
                "apiVersion": api_version, "kind": kind,
                "metadata": {"resourceVersion": list_rv,
                             "annotations": {INITIAL_EVENTS_END: "true"}}}))
            return events, list_rv

        rv = resource_version
        if rv is None:
            events, rv = await relist()
            for event in events:
                yield event
        failures = 0
        while True:
            per_call = timeout_seconds or random.randint(300, 600)
            params = {**select, "watch": True, "resourceVersion": rv,
                      "allowWatchBookmarks": True, "timeoutSeconds": per_call}
            try:
                async with contextlib.aclosing(self._stream(path, params, per_call)) as stream:
                    async for etype, obj in stream:
                        failures = 0
                        if etype == "ERROR":
                            raise error_from_status(obj)
                        rv = _rv(obj) or rv
                        if etype != "BOOKMARK":
                            key = object_key(obj)
                            if etype == "DELETED":
                                known.pop(key, None)
                            else:
                                known[key] = obj
                        yield etype, obj
            except ExpiredError:
                events, rv = await relist()
                for event in events:
                    yield event
                continue
            except TransportError:
                if not reconnect:
                    raise
                failures += 1
                await asyncio.sleep(min(0.05 * 2 ** failures, 5.0))
                continue
            if timeout_seconds is not None:
                return

    async def _stream(self, path: str, params: Mapping[str, Any],
                      server_timeout: int) -> AsyncIterator[WatchEvent]:
        timeout = httpx.Timeout(self._timeout, read=server_timeout + 30.0)
        try:
            async with self._watch_http.stream("GET", path, params=_compact(params),
                                         timeout=timeout) as resp:
                if not resp.is_success:
                    await resp.aread()
                    self._decode(resp)
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        event = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise TransportError(f"bad watch event: {line[:200]!r}") from exc
                    yield str(event.get("type")), event.get("object") or {}
        except httpx.HTTPError as exc:
            raise TransportError(f"watch {path}: {exc!r}") from exc


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _delete_options(propagation_policy: str | None, preconditions: Mapping[str, str] | None,
                    grace_period_seconds: int | None) -> JSON | None:
    opts: JSON = {}
    if propagation_policy:
        opts["propagationPolicy"] = propagation_policy
    if preconditions:
        opts["preconditions"] = dict(preconditions)
    if grace_period_seconds is not None:
        opts["gracePeriodSeconds"] = grace_period_seconds
    if not opts:
        return None
    return {"kind": "DeleteOptions", "apiVersion": "v1", **opts}

