"""Pod streams through the apiserver (nodeproxy): container choice and
errors as kube-apiserver words them, logs streamed from the node agent, and
exec-style WebSocket upgrades relayed both ways with the agent's chosen
subprotocol. The agent here is a small real HTTPS/WebSocket server on
loopback with a certificate from the cluster CA (the real node agent's
streams are tested with it in tests/node)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kubevisor.api.builtin import builtin_registry
from kubevisor.apiserver.config import KubeletClient, ServerConfig
from kubevisor.apiserver.nodeproxy import node_base_url, pick_container
from kubevisor.apiserver.pki import ensure_node_credentials, ensure_pki
from kubevisor.apiserver.server import bind_socket, serve
from kubevisor.store import open_store
from tests.apiserver.conftest import ADMIN, TOKEN

AGENT_TOKEN_SEEN: list[str] = []


def _pod(name: str, containers: list[str], node: str = "", inits: list[str] | None = None) -> dict:
    spec: dict[str, Any] = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if inits:
        spec["initContainers"] = [{"name": c, "image": "busybox"} for c in inits]
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_pick_container_wording() -> None:
    assert pick_container(_pod("one", ["a"]), "") == "a"
    assert pick_container(_pod("two", ["a", "b"]), "b") == "b"
    with pytest.raises(Exception) as exc:
        pick_container(_pod("two", ["a", "b"], inits=["i"]), "")
    assert str(exc.value) == ("a container name must be specified for pod two, choose one of: "
                              "[a b] or one of the init containers: [i]")
    with pytest.raises(Exception) as exc:
        pick_container(_pod("two", ["a", "b"]), "zz")
    assert str(exc.value) == "container zz is not valid for pod two"


def test_node_base_url_prefers_internal_ip() -> None:
    node = {"metadata": {"name": "n"}, "status": {
        "addresses": [{"type": "Hostname", "address": "h"},
                      {"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}
    assert node_base_url(node) == "https://127.0.0.1:10250"


async def _agent_app(scope: dict, receive: Any, send: Any) -> None:
    """A node agent stand-in: logs as three chunks, a WebSocket that picks
    ``v5.channel.k8s.io`` and echoes each message back prefixed by the path."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = dict(scope["headers"])
    AGENT_TOKEN_SEEN.append(headers.get(b"authorization", b"").decode())
    if scope["type"] == "http":
        await receive()
        if scope["path"].endswith("/missing"):
            body = (b'{"kind":"Status","apiVersion":"v1","status":"Failure",'
                    b'"message":"container not running","reason":"BadRequest","code":400}')
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for line in (scope["path"], scope["query_string"].decode(), "end"):
            await send({"type": "http.response.body", "body": line.encode() + b"\n",
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    chosen = "v5.channel.k8s.io" if "v5.channel.k8s.io" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen})
    prefix = (scope["path"] + "?" + scope["query_string"].decode() + "|").encode()
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") == b"\x00bye":
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "websocket.send", "bytes": prefix + (message.get("bytes") or b"")})


@contextlib.asynccontextmanager
async def _agent(pki: Path) -> AsyncIterator[int]:
    cert, key, _ = ensure_node_credentials(pki, "node-a", sans=["127.0.0.1"])
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_agent_app, ssl_certfile=str(cert), ssl_keyfile=str(key),
                                           ws="websockets-sansio", log_config=None,
                                           lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient, str]]:
    pki = tmp_path / "pki"
    creds = ensure_pki(pki)
    _, _, agent_token = ensure_node_credentials(pki, "node-a", sans=["127.0.0.1"])
    config = ServerConfig(store=open_store("sqlite", data_dir=tmp_path), registry=builtin_registry(),
                          tokens={TOKEN: ADMIN},
                          kubelet_client=KubeletClient(ca_file=str(creds.ca_file), token=agent_token))
    async with _agent(pki) as agent_port, serve(config, data_dir=tmp_path / "srv") as url:
        ca = ssl.create_default_context(cafile=str(url.kubeconfig.parent / "pki" / "ca.crt"))
        async with httpx.AsyncClient(base_url=str(url), verify=ca,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
            assert (await client.post("/api/v1/namespaces", json=ns)).status_code == 201
            node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}
            assert (await client.post("/api/v1/nodes", json=node)).status_code == 201
            status = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                                 "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}}}}
            r = await client.patch("/api/v1/nodes/node-a/status", json=status,
                                   headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
            for pod in (_pod("web", ["app"], node="node-a"), _pod("two", ["a", "b"], node="node-a"),
                        _pod("pending", ["app"])):
                r = await client.post("/api/v1/namespaces/default/pods", json=pod)
                assert r.status_code == 201, r.text
            yield url, client, agent_token


async def test_logs_stream_from_the_agent(cluster: tuple[Any, httpx.AsyncClient, str]) -> None:
    _, client, agent_token = cluster
    AGENT_TOKEN_SEEN.clear()
    r = await client.get("/api/v1/namespaces/default/pods/web/log",
                         params={"follow": "true", "tailLines": "5"})
    assert r.status_code == 200
    assert r.text.splitlines() == ["/containerLogs/default/web/app", "follow=true&tailLines=5", "end"]
    assert AGENT_TOKEN_SEEN == [f"Bearer {agent_token}"]


async def test_log_errors_are_statuses(cluster: tuple[Any, httpx.AsyncClient, str]) -> None:
    _, client, _ = cluster
    r = await client.get("/api/v1/namespaces/default/pods/two/log")
    assert (r.status_code, r.json()["reason"]) == (400, "BadRequest")
    assert "choose one of: [a b]" in r.json()["message"]
    r = await client.get("/api/v1/namespaces/default/pods/pending/log")
    assert r.status_code == 400
    assert r.json()["message"] == "pod pending does not have a host assigned"
    r = await client.get("/api/v1/namespaces/default/pods/nope/log")
    assert (r.status_code, r.json()["reason"]) == (404, "NotFound")
    r = await client.get("/api/v1/namespaces/default/pods/two/log", params={"container": "missing"})
    assert r.status_code == 400  # unknown to the pod: refused before reaching the agent
    r = await client.post("/api/v1/namespaces/default/pods/web/exec", params={"command": "ls"})
    assert (r.status_code, r.json()["message"]) == (400, "Upgrade request required")


def _wss(url: Any, path: str) -> tuple[str, ssl.SSLContext]:
    ca = ssl.create_default_context(cafile=str(url.kubeconfig.parent / "pki" / "ca.crt"))
    return str(url).replace("https://", "wss://") + path, ca


async def test_exec_websocket_is_relayed(cluster: tuple[Any, httpx.AsyncClient, str]) -> None:
    url, _, _ = cluster
    target, ca = _wss(url, "/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&stdin=true")
    async with connect(target, ssl=ca, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                       subprotocols=["v5.channel.k8s.io", "v4.channel.k8s.io"]) as ws:
        assert ws.subprotocol == "v5.channel.k8s.io"
        await ws.send(b"\x00hello")
        echoed = await ws.recv()
        assert echoed == b"/exec/default/web/app?command=sh&command=-c&stdin=true|\x00hello"
        await ws.send(b"\x00bye")
        with contextlib.suppress(Exception):
            await ws.recv()
        await asyncio.sleep(0.05)
        assert ws.close_code == 1000


async def test_websocket_token_in_subprotocol(cluster: tuple[Any, httpx.AsyncClient, str]) -> None:
    url, _, _ = cluster
    encoded = base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("=")
    target, ca = _wss(url, "/api/v1/namespaces/default/pods/web/attach?stdout=true")
    async with connect(target, ssl=ca, subprotocols=[
            "v5.channel.k8s.io", f"base64url.bearer.authorization.k8s.io.{encoded}"]) as ws:
        await ws.send(b"\x00x")
        assert (await ws.recv()).endswith(b"|\x00x")


async def test_websocket_refusals_are_statuses(cluster: tuple[Any, httpx.AsyncClient, str]) -> None:
    url, _, _ = cluster
    target, ca = _wss(url, "/api/v1/namespaces/default/pods/pending/exec?command=ls")
    with pytest.raises(InvalidStatus) as exc:
        async with connect(target, ssl=ca, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                           subprotocols=["v5.channel.k8s.io"]):
            pass
    assert exc.value.response.status_code == 400
    assert b"does not have a host assigned" in (exc.value.response.body or b"")
    target, ca = _wss(url, "/api/v1/namespaces/default/pods/web/exec?command=ls")
    with pytest.raises(InvalidStatus) as exc:
        async with connect(target, ssl=ca, subprotocols=["v5.channel.k8s.io"]):
            pass
    assert exc.value.response.status_code == 401
