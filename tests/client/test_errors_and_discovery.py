"""Status -> exception mapping, and the discovery cache's refresh rules."""

from __future__ import annotations

import pytest

from kubevisor.client import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    Discovery,
    ExpiredError,
    InvalidError,
    NotFoundError,
    ServerError,
    UnknownResourceError,
)
from kubevisor.client.errors import TransportError, error_from_status


def test_error_from_status_picks_the_subclass() -> None:
    def status(code: int, reason: str) -> dict:
        return {"kind": "Status", "code": code, "reason": reason, "message": f"m{code}"}

    assert type(error_from_status(status(404, "NotFound"))) is NotFoundError
    assert type(error_from_status(status(409, "AlreadyExists"))) is AlreadyExistsError
    assert type(error_from_status(status(409, "Conflict"))) is ConflictError
    assert type(error_from_status(status(410, "Expired"))) is ExpiredError
    assert type(error_from_status(status(422, "Invalid"))) is InvalidError
    assert type(error_from_status(status(503, "ServiceUnavailable"))) is ServerError
    err = error_from_status({"message": "teapot"}, http_code=418)
    assert type(err) is ApiError and err.code == 418 and err.status["status"] == "Failure"
    nf = error_from_status(status(404, "NotFound") | {"details": {"name": "x"}})
    assert (nf.code, nf.reason, nf.message, nf.details) == (404, "NotFound", "m404", {"name": "x"})
    assert str(nf) == "m404"


DOCS: dict[str, dict] = {
    "/api": {"versions": ["v1"]},
    "/api/v1": {"resources": [
        {"name": "pods", "kind": "Pod", "namespaced": True, "verbs": ["get", "list", "delete"]},
        {"name": "pods/status", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
        {"name": "namespaces", "kind": "Namespace", "namespaced": False, "verbs": ["list"]},
    ]},
    "/apis": {"groups": [{"name": "apps", "preferredVersion": {"version": "v1"},
                          "versions": [{"version": "v1"}, {"version": "v1beta1"}]}]},
    "/apis/apps/v1": {"resources": [
        {"name": "deployments", "kind": "Deployment", "namespaced": True, "verbs": ["list"]}]},
    "/apis/apps/v1beta1": {"resources": [
        {"name": "deployments", "kind": "Deployment", "namespaced": True, "verbs": ["list"]},
        {"name": "oldthings", "kind": "OldThing", "namespaced": True, "verbs": ["list"]}]},
}


class Server:
    """Serves discovery documents from a dict; counts fetches; can fail one path."""

    def __init__(self) -> None:
        self.docs = {k: dict(v) for k, v in DOCS.items()}
        self.fetches = 0
        self.broken: set[str] = set()

    async def fetch(self, path: str) -> dict:
        self.fetches += 1
        if path in self.broken:
            raise TransportError(f"{path} broken")
        return self.docs[path]


async def test_resolve_paths_and_preferred_versions() -> None:
    server = Server()
    d = Discovery(server.fetch)
    pod = await d.resolve("v1", "Pod")
    assert pod.path(namespace="ns", name="p", subresource="status") == (
        "/api/v1/namespaces/ns/pods/p/status")
    ns = await d.resolve("v1", "Namespace")
    assert ns.path(namespace="ignored", name="n") == "/api/v1/namespaces/n"
    dep = await d.resolve("apps/v1", "Deployment")
    assert dep.path(namespace="ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert dep.group_resource == "deployments.apps" and pod.group_resource == "pods"
    names = sorted((r.api_version, r.plural) for r in await d.resources())
    # one version per group/resource, the preferred one first, others only if unique
    assert names == [("apps/v1", "deployments"), ("apps/v1beta1", "oldthings"),
                     ("v1", "namespaces"), ("v1", "pods")]
    assert [r.plural for r in await d.resources(verbs=("delete",))] == ["pods"]


async def test_miss_refreshes_once_then_caches() -> None:
    server = Server()
    now = [0.0]
    d = Discovery(server.fetch, min_refresh_interval=1.0, clock=lambda: now[0])
    await d.resolve("v1", "Pod")
    first = server.fetches
    # a kind that appears later (a CRD) resolves after a refresh
    server.docs["/apis"] = {"groups": [*DOCS["/apis"]["groups"], {
        "name": "example.com", "versions": [{"version": "v1"}]}]}
    server.docs["/apis/example.com/v1"] = {"resources": [
        {"name": "widgets", "kind": "Widget", "namespaced": True, "verbs": ["list"]}]}
    now[0] = 5.0
    widget = await d.resolve("example.com/v1", "Widget")
    assert widget.path() == "/apis/example.com/v1/widgets"
    assert server.fetches > first
    # unknown kinds within the refresh interval do not hammer the server
    before = server.fetches
    for _ in range(3):
        with pytest.raises(UnknownResourceError):
            await d.resolve("v1", "Nope")
    assert server.fetches == before


async def test_failed_group_versions_are_reported_not_fatal() -> None:
    server = Server()
    server.broken.add("/apis/apps/v1beta1")
    d = Discovery(server.fetch)
    await d.refresh()
    assert list(d.failed) == ["apps/v1beta1"]
    assert (await d.resolve("apps/v1", "Deployment")).plural == "deployments"
