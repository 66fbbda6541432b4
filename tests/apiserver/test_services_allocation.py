"""The allocators under contention and across restarts: concurrent creates
get distinct values, a full range answers kube's 500, a restarted server
on the same store keeps what was allocated, repair reconciles reservation
keys with the stored Services, and the ``kubernetes`` Service."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson

from kubevisor.apiserver import kubernetesservice, serviceranges, services
from kubevisor.apiserver.app import App, create_app
from tests.apiserver.conftest import TOKEN, make_config, make_ns

SVC = "/api/v1/namespaces/s/services"


@contextlib.asynccontextmanager
async def server(data_dir: Path, **config: object) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    cfg = make_config(data_dir)
    for key, value in config.items():
        setattr(cfg, key, value)
    app = create_app(cfg)
    assert isinstance(app, App)
    await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://kv",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            yield app, client
    finally:
        await app.shutdown()
        await cfg.store.close()


def svc(name: str, **spec: object) -> dict:
    return {"metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


async def test_fifty_concurrent_creates_get_distinct_ips(tmp_path: Path) -> None:
    async with server(tmp_path) as (_, api):
        await make_ns(api, "s")
        rs = await asyncio.gather(*(api.post(SVC, json=svc(f"s{i}", type="NodePort"))
                                    for i in range(50)))
        assert [r.status_code for r in rs] == [201] * 50
        ips = {r.json()["spec"]["clusterIP"] for r in rs}
        ports = {r.json()["spec"]["ports"][0]["nodePort"] for r in rs}
        assert len(ips) == 50 and len(ports) == 50


async def test_concurrent_creates_in_a_small_range(tmp_path: Path) -> None:
    """62 usable addresses, 50 creates at once: every guess collides often."""
    async with server(tmp_path, service_cidr="10.200.0.0/26") as (_, api):
        await make_ns(api, "s")
        rs = await asyncio.gather(*(api.post(SVC, json=svc(f"s{i}")) for i in range(50)))
        assert [r.status_code for r in rs] == [201] * 50
        ips = [r.json()["spec"]["clusterIP"] for r in rs]
        assert len(set(ips)) == 50
        net = ipaddress.ip_network("10.200.0.0/26")
        assert all(ipaddress.ip_address(ip) in net for ip in ips)
        assert "10.200.0.0" not in ips and "10.200.0.63" not in ips


async def test_full_range_and_release(tmp_path: Path) -> None:
    async with server(tmp_path, service_cidr="10.200.0.0/29",
                      service_node_port_range="30000-30001") as (_, api):
        await make_ns(api, "s")
        for i in range(6):  # .1 to .6
            r = await api.post(SVC, json=svc(f"s{i}"))
            assert r.status_code == 201, r.text
        r = await api.post(SVC, json=svc("full"))
        assert r.status_code == 500
        assert r.json()["message"] == ("Internal error occurred: failed to allocate a serviceIP: "
                                       "range is full")
        freed = (await api.get(f"{SVC}/s3")).json()["spec"]["clusterIP"]
        assert (await api.delete(f"{SVC}/s3")).status_code == 200
        r = await api.post(SVC, json=svc("again"))
        assert r.status_code == 201 and r.json()["spec"]["clusterIP"] == freed
        r = await api.post(SVC, json=svc("np", type="NodePort", clusterIP="None",
                                         ports=[{"port": 1, "name": "a"}, {"port": 2, "name": "b"},
                                                {"port": 3, "name": "c"}]))
        assert r.status_code == 500
        assert r.json()["message"].endswith("failed to allocate a nodePort: range is full")
        # The failed create gave back the two ports it had taken.
        r = await api.post(SVC, json=svc("np2", type="NodePort", clusterIP="None",
                                         ports=[{"port": 1, "name": "a"}, {"port": 2, "name": "b"}]))
        assert r.status_code == 201, r.text


async def test_restart_on_the_same_store_keeps_allocations(tmp_path: Path) -> None:
    async with server(tmp_path, service_cidr="10.200.0.0/29") as (_, api):
        await make_ns(api, "s")
        taken = set()
        for i in range(5):
            r = await api.post(SVC, json=svc(f"s{i}", type="NodePort"))
            taken.add(r.json()["spec"]["clusterIP"])
        port = r.json()["spec"]["ports"][0]["nodePort"]
    async with server(tmp_path, service_cidr="10.200.0.0/29") as (_, api):
        for ip in taken:
            r = await api.post(SVC, json=svc("dup", clusterIP=ip))
            assert r.status_code == 422 and "provided IP is already allocated" in r.text
        r = await api.post(SVC, json=svc("np", type="NodePort",
                                         ports=[{"port": 80, "nodePort": port}]))
        assert r.status_code == 422 and "provided port is already allocated" in r.text
        r = await api.post(SVC, json=svc("last"))
        assert r.status_code == 201
        last = r.json()["spec"]["clusterIP"]
        assert last not in taken
        assert (await api.post(SVC, json=svc("over"))).status_code == 500


async def test_repair_reconciles_reservations_with_services(tmp_path: Path) -> None:
    async with server(tmp_path) as (app, api):
        await make_ns(api, "s")
        r = await api.post(SVC, json=svc("a", clusterIP="10.96.0.40"))
        uid = r.json()["metadata"]["uid"]
        store = app.ctx.store
        alloc = services.allocators(app.ctx)
        # A crash lost the reservation of a stored Service; another leaked one.
        await store.delete("/registry/ranges/serviceips/10.96.0.40")
        alloc.ips.used.discard("10.96.0.40")
        leaked = {"namespace": "s", "name": "gone", "uid": "u-1", "time": time.time() - 3600}
        await store.create("/registry/ranges/serviceips/10.96.0.41", orjson.dumps(leaked))
        fresh = {**leaked, "time": time.time()}  # a create in flight: left alone
        await store.create("/registry/ranges/serviceips/10.96.0.42", orjson.dumps(fresh))
        created, removed = await serviceranges.repair(alloc)
        assert (created, removed) == (1, 1)
        kv = await store.get("/registry/ranges/serviceips/10.96.0.40")
        assert kv is not None and orjson.loads(kv.value)["uid"] == uid
        assert await store.get("/registry/ranges/serviceips/10.96.0.41") is None
        assert await store.get("/registry/ranges/serviceips/10.96.0.42") is not None
        r = await api.post(SVC, json=svc("b", clusterIP="10.96.0.40"))
        assert r.status_code == 422
        r = await api.post(SVC, json=svc("b", clusterIP="10.96.0.41"))
        assert r.status_code == 201


async def test_second_apiserver_view_follows_the_watch(tmp_path: Path) -> None:
    """Reservations another server makes reach this server's view."""
    async with server(tmp_path) as (app, api):
        await make_ns(api, "s")
        alloc = services.allocators(app.ctx)
        owner = {"namespace": "s", "name": "x", "uid": "u-9", "time": time.time()}
        await app.ctx.store.create("/registry/ranges/serviceips/10.96.0.99",
                                   orjson.dumps(owner))
        for _ in range(100):
            if "10.96.0.99" in alloc.ips.used:
                break
            await asyncio.sleep(0.01)
        assert "10.96.0.99" in alloc.ips.used


async def test_kubernetes_service_and_endpoints(tmp_path: Path) -> None:
    async with server(tmp_path, advertise_address="192.0.2.10", advertise_port=6443) as (app, api):
        assert await kubernetesservice.ensure(app.ctx) is False  # no default namespace yet
        await make_ns(api, "default")
        assert await kubernetesservice.ensure(app.ctx) is True
        got = (await api.get("/api/v1/namespaces/default/services/kubernetes")).json()
        assert got["spec"]["clusterIP"] == "10.96.0.1"
        assert got["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                                         "targetPort": 6443}]
        assert got["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
        ep = (await api.get("/api/v1/namespaces/default/endpoints/kubernetes")).json()
        assert ep["subsets"] == [{"addresses": [{"ip": "192.0.2.10"}],
                                  "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
        rv = ep["metadata"]["resourceVersion"]
        assert await kubernetesservice.ensure(app.ctx) is True  # nothing to change
        ep = (await api.get("/api/v1/namespaces/default/endpoints/kubernetes")).json()
        assert ep["metadata"]["resourceVersion"] == rv
        sl = (await api.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/"
                            "kubernetes")).json()
        assert sl["endpoints"][0]["addresses"] == ["192.0.2.10"]
        # A new port (the server restarted elsewhere) is written through.
        app.ctx.config.advertise_port = 7443
        await kubernetesservice.ensure(app.ctx)
        got = (await api.get("/api/v1/namespaces/default/services/kubernetes")).json()
        assert got["spec"]["ports"][0]["targetPort"] == 7443
        assert got["spec"]["clusterIP"] == "10.96.0.1"
        ep = (await api.get("/api/v1/namespaces/default/endpoints/kubernetes")).json()
        assert ep["subsets"][0]["ports"][0]["port"] == 7443


async def test_two_apiservers_on_one_store_never_share_an_ip(tmp_path: Path) -> None:
    """Two servers (each with its own view) on one store, as with etcd."""
    async with server(tmp_path, service_cidr="10.200.0.0/26") as (first, api1):
        second = create_app(first.ctx.config)
        assert isinstance(second, App)
        await second.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second),
                                         base_url="http://kv",
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as api2:
                await make_ns(api1, "s")
                rs = await asyncio.gather(*((api1 if i % 2 else api2).post(
                    SVC, json=svc(f"s{i}")) for i in range(50)))
                assert [r.status_code for r in rs] == [201] * 50
                assert len({r.json()["spec"]["clusterIP"] for r in rs}) == 50
        finally:
            await second.shutdown()


async def test_kubernetes_service_appears_once_default_exists(tmp_path: Path) -> None:
    """The server's own loop: the address may even be set after start."""
    async with server(tmp_path) as (app, api):
        await make_ns(api, "default")
        app.ctx.config.advertise_address = "192.0.2.10"
        app.ctx.config.advertise_port = 6443
        for _ in range(100):
            r = await api.get("/api/v1/namespaces/default/endpoints/kubernetes")
            if r.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text
        got = (await api.get("/api/v1/namespaces/default/services/kubernetes")).json()
        assert got["spec"]["clusterIP"] == "10.96.0.1"
