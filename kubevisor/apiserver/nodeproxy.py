"""Pod streams through the apiserver: ``pods/log``, ``pods/exec``,
``pods/attach`` and ``pods/portforward``, proxied to the pod's node agent.

As kube-apiserver does for the kubelet: the pod is read, its container
checked (400 with kube's wording when it names none of several, or an
unknown one), its node's agent located from the Node object
(``status.addresses``, InternalIP first, and
``status.daemonEndpoints.kubeletEndpoint.Port``), and the request forwarded
over HTTPS to the agent's kubelet-style paths (``/containerLogs/NS/POD/C``,
``/exec/NS/POD/C``, ``/attach/NS/POD/C``, ``/portForward/NS/POD``) with the
query string unchanged, authenticated by the bearer token the agents accept
from the apiserver and verifying their certificates against the cluster CA.

Logs stream as chunked HTTP. exec, attach and port-forward are WebSocket
upgrades (kubectl 1.32 speaks ``v5.channel.k8s.io`` for exec/attach and
``SPDY/3.1+portforward.k8s.io`` for port-forward): the apiserver opens a
WebSocket to the agent offering the client's subprotocols, accepts the
client's with the one the agent chose, and relays messages both ways until
either side closes; the protocols themselves are the agent's business.
Called by ``app.py``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from kubevisor.apiserver import errors, storage
from kubevisor.apiserver.config import KubeletClient
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Request, StreamResponse
from kubevisor.apiserver.listing import get_kv
from kubevisor.streaming.race import race
from kubevisor.streaming.websocket import RawSubprotocolConnection

JSON = dict[str, Any]
log = logging.getLogger(__name__)

#: Subresource → the agent's path prefix, and whether it names a container.
STREAM_PATHS: dict[str, tuple[str, bool]] = {
    "log": ("containerLogs", True),
    "exec": ("exec", True),
    "attach": ("attach", True),
    "portforward": ("portForward", False),
}
_ADDRESS_PREFERENCE = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")


async def _read(ctx: Context, group: str, resource: str, namespace: str, name: str) -> JSON | None:
    rt = ctx.resource(group, "v1", resource)
    assert rt is not None, f"{resource} is a built-in kind"
    kv = await get_kv(ctx, storage.key(rt, namespace, name))
    return None if kv is None else storage.decode(kv)


def pick_container(pod: JSON, requested: str) -> str:
    """The container a log/exec/attach request means, or kube's 400."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    inits = [c.get("name", "") for c in spec.get("initContainers") or []]
    ephemeral = [c.get("name", "") for c in spec.get("ephemeralContainers") or []]
    if not requested:
        if len(containers) == 1:
            return containers[0]
        message = (f"a container name must be specified for pod {name}, "
                   f"choose one of: [{' '.join(containers)}]")
        if inits:
            message += f" or one of the init containers: [{' '.join(inits)}]"
        if ephemeral:
            message += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
        raise errors.bad_request(message)
    if requested not in (*containers, *inits, *ephemeral):
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def node_base_url(node: JSON) -> str:
    """``https://ADDRESS:PORT`` of a node's agent, from its status."""
    status = node.get("status") or {}
    port = (((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")) or 0
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []
                 if isinstance(a, dict)}
    host = next((addresses[t] for t in _ADDRESS_PREFERENCE if addresses.get(t)), "")
    if not host or not port:
        raise errors.service_unavailable(
            f"no preferred addresses found; known addresses: {list(addresses.values())}"
            if not host else f"node {node['metadata']['name']} reports no kubelet port")
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


async def target(ctx: Context, namespace: str, pod_name: str, subresource: str,
                 container: str) -> tuple[str, KubeletClient]:
    """The agent URL (without query) for one stream request, or the Status
    kube-apiserver answers when there is none."""
    client = ctx.config.kubelet_client
    if client is None:
        raise errors.service_unavailable("this apiserver has no credentials for node agents")
    pod = await _read(ctx, "", "pods", namespace, pod_name)
    if pod is None:
        raise errors.not_found("pods", pod_name)
    prefix, with_container = STREAM_PATHS[subresource]
    parts = [prefix, namespace, pod_name]
    if with_container:
        parts.append(pick_container(pod, container))
    node_name = (pod.get("spec") or {}).get("nodeName") or ""
    if not node_name:
        raise errors.bad_request(f"pod {pod_name} does not have a host assigned")
    node = await _read(ctx, "", "nodes", "", node_name)
    if node is None:
        raise errors.not_found("nodes", node_name)
    path = "/".join(quote(p, safe="") for p in parts)
    return f"{node_base_url(node)}/{path}", client


def _ssl_context(client: KubeletClient) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=client.ca_file or None)
    return context


def _headers(client: KubeletClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}"} if client.token else {}


# ---------------------------------------------------------------- pods/log


async def pod_log(ctx: Context, req: Request, namespace: str, name: str,
                  raw_query: bytes) -> StreamResponse:
    """``GET .../pods/NAME/log``: the agent's answer streamed through."""
    url, client = await target(ctx, namespace, name, "log", req.query.get("container", ""))
    http = httpx.AsyncClient(verify=_ssl_context(client), headers=_headers(client),
                             timeout=httpx.Timeout(client.timeout_seconds, read=None))
    try:
        upstream = await http.send(
            http.build_request("GET", url + ("?" + raw_query.decode("latin-1") if raw_query else "")),
            stream=True)
    except httpx.HTTPError as exc:
        await http.aclose()
        raise errors.service_unavailable(f"error dialing backend: {exc}") from exc
    if upstream.status_code >= 400:
        body = await upstream.aread()
        await upstream.aclose()
        await http.aclose()
        raise _status_from(upstream.status_code, body)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            log.info("log stream of %s/%s ended: %s", namespace, name, exc)
        finally:
            await upstream.aclose()
            await http.aclose()

    return StreamResponse(200, chunks(), upstream.headers.get("content-type", "text/plain"))


def _status_from(code: int, body: bytes) -> errors.ApiError:
    """The agent's ``kind: Status`` answer as an ApiError (or a generic one)."""
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return errors.ApiError(code, status.get("reason") or "", status.get("message") or "",
                               status.get("details"))
    text = body.decode("utf-8", "replace").strip() or f"node agent answered {code}"
    return errors.ApiError(code, "", text)


# ------------------------------------------------ exec, attach, portforward


async def relay_websocket(url: str, client: KubeletClient, scope: dict[str, Any],
                          receive: Any, send: Any) -> None:
    """Open the agent's WebSocket offering the client's subprotocols, accept
    the client's with the agent's choice, and relay until one side closes.
    Raises ApiError before accepting when the agent cannot be reached or
    refuses (its Status passed through)."""
    query = scope.get("query_string", b"").decode("latin-1")
    offered = [p for p in scope.get("subprotocols") or []
               if not p.startswith("base64url.bearer.authorization.k8s.io.")]
    headers = _headers(client)
    if offered:  # as a raw header: names like SPDY/3.1+portforward.k8s.io are no tokens
        headers["Sec-WebSocket-Protocol"] = ", ".join(offered)
    try:
        upstream = await connect(
            "wss://" + url.removeprefix("https://") + ("?" + query if query else ""),
            ssl=_ssl_context(client), additional_headers=headers,
            create_connection=RawSubprotocolConnection, max_size=None, compression=None,
            open_timeout=client.timeout_seconds, ping_interval=None)
    except InvalidStatus as exc:
        raise _status_from(exc.response.status_code, exc.response.body or b"") from exc
    except (TimeoutError, OSError, InvalidHandshake) as exc:
        raise errors.service_unavailable(f"error dialing backend: {exc}") from exc
    async with upstream:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _pump(upstream, receive, send)


async def _pump(upstream: ClientConnection, receive: Any, send: Any) -> None:
    async def down() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                if isinstance(message, bytes):
                    await send({"type": "websocket.send", "bytes": message})
                else:
                    await send({"type": "websocket.send", "text": message})

    async def up() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            data = message.get("bytes")
            with contextlib.suppress(ConnectionClosed):
                await upstream.send(data if data is not None else message.get("text") or "")

    done, tasks = await race(down(), up())
    if tasks[0] in done:  # the agent closed: close the client with its code
        code = upstream.close_code or 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code,
                        "reason": upstream.close_reason or ""})
