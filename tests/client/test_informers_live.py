"""SharedInformers against the real apiserver: one informer per watch,
late users replayed, release, filtering; and Client.connection()."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import pytest

from kubevisor.client import (
    AlreadyExistsError,
    Client,
    SharedInformers,
    filtered,
    has_label,
    metadata_only,
)
from kubevisor.client.informer import MUTATION_DETECTOR_ENV, MUTATIONS, DerivedInformer

JSON = dict[str, Any]


@pytest.fixture(autouse=True)
async def default_namespace(api: Client) -> None:
    try:
        await api.create({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "default"}})
    except AlreadyExistsError:
        pass


def cm(name: str, **labels: str) -> JSON:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "data": {"k": "v"}}


async def until(check: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_one_informer_per_parameters(api: Client) -> None:
    informers = SharedInformers(api)
    full = informers.get("v1", "ConfigMap")
    assert informers.get("v1", "ConfigMap") is full
    meta = informers.get("v1", "ConfigMap", transform=metadata_only)
    assert meta is not full and informers.get("v1", "ConfigMap", transform=metadata_only) is meta
    assert informers.get("v1", "ConfigMap", namespace="default") is not full
    assert informers.get("v1", "ConfigMap", label_selector="a") is not full
    assert len(informers.created()) == 4


async def test_run_syncs_every_informer_and_starts_late_ones(api: Client) -> None:
    await api.create(cm("s0", app="x"))
    informers = SharedInformers(api)
    early = informers.get("v1", "ConfigMap")
    runner = asyncio.create_task(informers.run())
    try:
        await asyncio.wait_for(informers.wait_synced(), 10)
        assert early.get("s0", "default") is not None
        late = informers.get("v1", "ConfigMap", transform=metadata_only)  # after start
        await asyncio.wait_for(informers.wait_synced(late), 10)
        assert late.get("s0", "default") == metadata_only(early.get("s0", "default") or {})
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("informer-")]


async def test_late_handler_gets_the_cache_first(api: Client) -> None:
    await api.create(cm("r0"))
    informers = SharedInformers(api)
    inf = informers.get("v1", "ConfigMap", namespace="default")
    runner = asyncio.create_task(informers.run())
    try:
        await asyncio.wait_for(informers.wait_synced(inf), 10)
        seen: list[tuple[str, str]] = []

        def handler(t: str, o: JSON, old: JSON | None) -> None:
            seen.append((t, o["metadata"]["name"]))

        inf.add_handler(handler)
        assert seen == [("ADDED", "r0")]  # replayed at once, before any new event
        await api.create(cm("r1"))
        await until(lambda: ("ADDED", "r1") in seen)
        inf.remove_handler(handler)
        await api.create(cm("r2"))
        await until(lambda: inf.get("r2", "default") is not None)
        assert ("ADDED", "r2") not in seen
    finally:
        runner.cancel()


async def test_release_stops_the_informer_after_its_last_user(api: Client) -> None:
    informers = SharedInformers(api)
    inf = informers.get("v1", "ConfigMap")
    assert informers.get("v1", "ConfigMap") is inf  # two users
    runner = asyncio.create_task(informers.run())
    try:
        await asyncio.wait_for(informers.wait_synced(inf), 10)
        informers.release(inf)
        assert inf in informers.created()
        informers.release(inf)
        assert inf not in informers.created()
        await api.create(cm("gone0"))
        await asyncio.sleep(0.3)
        assert inf.get("gone0", "default") is None  # no longer watching
        again = informers.get("v1", "ConfigMap")
        assert again is not inf
        await asyncio.wait_for(informers.wait_synced(again), 10)
        assert again.get("gone0", "default") is not None
    finally:
        runner.cancel()


def test_filtered_behaves_like_a_selector_watch() -> None:
    got: list[tuple[str, str, str | None]] = []

    def record(t: str, o: JSON, old: JSON | None) -> None:
        got.append((t, o["metadata"]["name"],
                    None if old is None else old["metadata"]["labels"].get("v")))

    handler = filtered(has_label("want"), record)

    def obj(name: str, **labels: str) -> JSON:
        return {"metadata": {"name": name, "labels": labels}}

    handler("ADDED", obj("a"), None)  # not in the subset
    handler("ADDED", obj("b", want="", v="1"), None)
    handler("MODIFIED", obj("a", want="", v="2"), obj("a", v="1"))  # moves in
    handler("MODIFIED", obj("b", want="", v="3"), obj("b", want="", v="1"))  # stays in
    handler("MODIFIED", obj("b", v="4"), obj("b", want="", v="3"))  # moves out
    handler("MODIFIED", obj("b", v="5"), obj("b", v="4"))  # stays out
    handler("DELETED", obj("a", want="", v="2"), obj("a", want="", v="2"))
    handler("DELETED", obj("c"), obj("c"))
    assert got == [("ADDED", "b", None), ("ADDED", "a", None), ("MODIFIED", "b", "1"),
                   ("DELETED", "b", "3"), ("DELETED", "a", "2")]


async def test_connection_describes_the_server_and_identity(api: Client) -> None:
    conn = api.connection()
    assert conn is not None
    assert conn.server == api.server and conn.server.startswith("https://")
    assert conn.authorization is not None and conn.authorization.startswith("Bearer ")
    assert isinstance(conn.ssl_context, ssl.SSLContext)
    assert conn.ssl_context.verify_mode == ssl.CERT_REQUIRED
    # the same trust and identity serve a request made on another connection
    async with httpx.AsyncClient(base_url=conn.server, verify=conn.ssl_context,
                                 headers={"Authorization": conn.authorization}) as http:
        made = await http.post("/api/v1/namespaces/default/configmaps", json=cm("direct"))
        assert made.status_code == 201, made.text
        anonymous = await http.get("/api/v1/namespaces/default/configmaps",
                                   headers={"Authorization": ""})
        assert anonymous.status_code in (401, 403)


async def test_mutation_detector_reports_an_edited_cache(
        api: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MUTATION_DETECTOR_ENV, "1")
    informers = SharedInformers(api)
    inf = informers.get("v1", "ConfigMap", namespace="default")
    await api.create(cm("m0"))
    runner = asyncio.create_task(informers.run())
    try:
        await asyncio.wait_for(informers.wait_synced(inf), 10)
        before = len(MUTATIONS)
        inf.check_mutations()
        assert len(MUTATIONS) == before  # nothing touched yet
        cached = inf.get("m0", "default")
        assert cached is not None
        cached["data"]["k"] = "edited in place"  # what a controller must never do
        await api.patch("v1", "ConfigMap", "m0", {"data": {"other": "x"}}, namespace="default")
        await until(lambda: len(MUTATIONS) > before)
        assert MUTATIONS[-1] == "Informer(v1, ConfigMap) default/m0"
    finally:
        runner.cancel()


async def test_a_transformed_view_of_a_watched_kind_is_derived(api: Client) -> None:
    """The metadata view of a kind whose whole objects are watched opens no
    second watch: it follows the whole informer (adds, updates, deletes)."""
    await api.create(cm("d0", app="x"))
    informers = SharedInformers(api)
    whole = informers.get("v1", "ConfigMap")
    runner = asyncio.create_task(informers.run())
    try:
        await asyncio.wait_for(informers.wait_synced(whole), 10)
        meta = informers.get("v1", "ConfigMap", transform=metadata_only)
        assert isinstance(meta, DerivedInformer) and meta.source is whole
        await asyncio.wait_for(informers.wait_synced(meta), 10)
        assert meta.get("d0", "default") == metadata_only(whole.get("d0", "default") or {})
        assert "data" not in (meta.get("d0", "default") or {})
        events: list[tuple[str, str]] = []
        meta.add_handler(lambda t, o, old: events.append((t, o["metadata"]["name"])))
        await api.create(cm("d1"))
        await api.delete("v1", "ConfigMap", "d0", namespace="default")
        await until(lambda: ("DELETED", "d0") in events and ("ADDED", "d1") in events)
        assert meta.get("d0", "default") is None and meta.get("d1", "default") is not None
        # releasing the whole informer keeps it for the derived one
        informers.release(whole)
        assert whole in informers.created()
        informers.release(meta)
        assert informers.created() == []
    finally:
        runner.cancel()
