"""Watch over raw HTTPS, the way client-go issues it: ``resourceVersion``
unset/"0"/N semantics, ``timeoutSeconds``, selectors (an object leaving the
selection is DELETED, entering it ADDED), the legacy ``/watch/`` paths and
one-row Tables per event."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.server import KubevisorServer

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-watch-http")

CM = {"apiVersion": "v1", "kind": "ConfigMap"}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def collect(
    server: KubevisorServer,
    path: str,
    params: dict[str, str],
    *,
    count: int,
    during: Callable[[], None] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> list[dict[str, Any]]:
    """Open a watch, run ``during`` in a thread once it is open, return the
    first ``count`` events (fewer if the server ends the stream)."""
    events: list[dict[str, Any]] = []
    with server.client(timeout=timeout) as http:
        with http.stream("GET", path, params={"watch": "true", **params},
                         headers=headers or {}) as response:  # fmt: skip
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("application/json")
            worker = threading.Thread(target=during) if during else None
            if worker:
                worker.start()
            try:
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    events.append(json.loads(line))
                    if len(events) >= count:
                        break
            finally:
                if worker:
                    worker.join(timeout=30)
    return events


def post_cm(server: KubevisorServer, ns: str, name: str, **labels: str) -> dict[str, Any]:
    with server.client() as http:
        body = CM | {"metadata": {"name": name, "labels": labels}, "data": {"v": name}}
        response = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def merge_patch(server: KubevisorServer, ns: str, name: str, patch: dict[str, Any]) -> None:
    with server.client() as http:
        response = http.patch(
            f"/api/v1/namespaces/{ns}/configmaps/{name}",
            content=json.dumps(patch).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status_code == 200, response.text


def test_resource_version_unset_zero_and_n(server: KubevisorServer, ns: str) -> None:
    first = post_cm(server, ns, "one")
    post_cm(server, ns, "two")
    path = f"/api/v1/namespaces/{ns}/configmaps"
    # unset and "0": the current state as synthetic ADDED events, then live
    expected = [("ADDED", "one"), ("ADDED", "two")]
    for live, params in (("zz-live-a", {}), ("zz-live-b", {"resourceVersion": "0"})):
        events = collect(server, path, params, count=len(expected) + 1,
                         during=lambda live=live: post_cm(server, ns, live))  # fmt: skip
        expected.append(("ADDED", live))
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == expected
        assert events[0]["object"]["kind"] == "ConfigMap"
        assert events[0]["object"]["apiVersion"] == "v1"
    # N: only what happened after N, in order
    events = collect(server, path, {"resourceVersion": first["metadata"]["resourceVersion"]},
                     count=3)  # fmt: skip
    assert [e["object"]["metadata"]["name"] for e in events] == ["two", "zz-live-a", "zz-live-b"]
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revisions == sorted(revisions)


def test_timeout_seconds_ends_the_stream(server: KubevisorServer, ns: str) -> None:
    started = time.monotonic()
    events = collect(server, f"/api/v1/namespaces/{ns}/configmaps",
                     {"timeoutSeconds": "2", "resourceVersion": "0"}, count=100)  # fmt: skip
    elapsed = time.monotonic() - started
    assert events == []
    assert 1.5 <= elapsed < 8, elapsed


def test_selectors_follow_objects_in_and_out(server: KubevisorServer, ns: str) -> None:
    post_cm(server, ns, "moving", team="a")
    rv = post_cm(server, ns, "other", team="b")["metadata"]["resourceVersion"]

    def changes() -> None:
        merge_patch(server, ns, "moving", {"metadata": {"labels": {"team": "b"}}})
        merge_patch(server, ns, "moving", {"data": {"v": "x"}})
        merge_patch(server, ns, "moving", {"metadata": {"labels": {"team": "a"}}})
        with server.client() as http:
            http.delete(f"/api/v1/namespaces/{ns}/configmaps/moving")

    events = collect(server, f"/api/v1/namespaces/{ns}/configmaps",
                     {"resourceVersion": rv, "labelSelector": "team=b"}, count=3,
                     during=changes)  # fmt: skip
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "moving"), ("MODIFIED", "moving"), ("DELETED", "moving"),
    ], events  # fmt: skip
    assert events[2]["object"]["metadata"]["labels"] == {"team": "a"}  # the new state


def test_field_selector_and_legacy_watch_path(server: KubevisorServer, ns: str) -> None:
    rv = post_cm(server, ns, "target")["metadata"]["resourceVersion"]
    post_cm(server, ns, "noise")

    def changes() -> None:
        merge_patch(server, ns, "noise", {"data": {"v": "1"}})
        merge_patch(server, ns, "target", {"data": {"v": "2"}})

    events = collect(server, f"/api/v1/namespaces/{ns}/configmaps",
                     {"resourceVersion": rv, "fieldSelector": "metadata.name=target"}, count=1,
                     during=changes)  # fmt: skip
    assert [(e["type"], e["object"]["data"]["v"]) for e in events] == [("MODIFIED", "2")]

    events = collect(server, f"/api/v1/watch/namespaces/{ns}/configmaps/target",
                     {"resourceVersion": rv}, count=1)  # fmt: skip
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "target")
    ]


def test_table_watch_sends_one_row_tables(server: KubevisorServer, ns: str) -> None:
    post_cm(server, ns, "tab")
    events = collect(server, f"/api/v1/namespaces/{ns}/configmaps", {"resourceVersion": "0"},
                     count=2, headers={"Accept": TABLE},
                     during=lambda: post_cm(server, ns, "tab2"))  # fmt: skip
    for event, name in zip(events, ["tab", "tab2"], strict=True):
        table = event["object"]
        assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1", table
        [row] = table["rows"]
        assert row["cells"][0] == name
        assert row["object"]["metadata"]["name"] == name
    assert [c["name"] for c in events[0]["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]


def test_watch_errors(server: KubevisorServer, ns: str) -> None:
    with server.client() as http:
        bad = http.get(f"/api/v1/namespaces/{ns}/configmaps",
                       params={"watch": "true", "labelSelector": "a in ("})  # fmt: skip
        assert bad.status_code == 400 and bad.json()["reason"] == "BadRequest"
        bad = http.get(f"/api/v1/namespaces/{ns}/configmaps",
                       params={"watch": "true", "resourceVersion": "x"})  # fmt: skip
        assert bad.status_code == 400, bad.text
        nowhere = http.get("/api/v1/nothings", params={"watch": "true"})
        assert nowhere.status_code == 404
    with pytest.raises(httpx.ReadTimeout), server.client(timeout=1.0) as http:
        # a watch with nothing to say stays open (kube sends nothing until an event)
        with http.stream("GET", f"/api/v1/namespaces/{ns}/configmaps",
                         params={"watch": "true", "resourceVersion": "0",
                                 "fieldSelector": "metadata.name=never"}) as response:  # fmt: skip
            for _line in response.iter_lines():
                pass
