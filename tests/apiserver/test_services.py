"""Service ClusterIP and NodePort allocation against the real app and store:
allocation, requested values, kube's 422 messages, headless and
ExternalName, immutability, release and reuse, type changes, dry runs."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from tests.apiserver.conftest import make_ns

SVC = "/api/v1/namespaces/s/services"
MERGE = {"Content-Type": "application/merge-patch+json"}


def svc(name: str, *, type_: str = "ClusterIP", ports: list[dict] | None = None,
        **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "selector": {"app": name},
                     "ports": ports if ports is not None else [{"port": 80}], **spec}}


@pytest.fixture
async def ns(api: httpx.AsyncClient) -> httpx.AsyncClient:
    await make_ns(api, "s")
    return api


async def create(api: httpx.AsyncClient, body: dict, status: int = 201) -> dict:
    r = await api.post(SVC, json=body)
    assert r.status_code == status, r.text
    result: dict = r.json()
    return result


async def test_cluster_ip_allocated_from_the_service_cidr(ns: httpx.AsyncClient) -> None:
    spec = (await create(ns, svc("a")))["spec"]
    ip = ipaddress.ip_address(spec["clusterIP"])
    assert ip in ipaddress.ip_network("10.96.0.0/12")
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    # Dynamic allocations stay out of the low band kept for requested IPs.
    assert int(ip) - int(ipaddress.ip_address("10.96.0.1")) >= 256
    got = (await ns.get(f"{SVC}/a")).json()
    assert got["spec"]["clusterIP"] == spec["clusterIP"]


async def test_requested_ip_honoured_then_refused_as_duplicate(ns: httpx.AsyncClient) -> None:
    spec = (await create(ns, svc("a", clusterIP="10.96.0.10")))["spec"]
    assert spec["clusterIP"] == "10.96.0.10" and spec["clusterIPs"] == ["10.96.0.10"]
    r = await ns.post(SVC, json=svc("b", clusterIP="10.96.0.10"))
    assert r.status_code == 422
    body = r.json()
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: '
        "failed to allocate IP 10.96.0.10: provided IP is already allocated")
    assert body["details"]["causes"][0]["field"] == "spec.clusterIPs"
    assert (await ns.get(f"{SVC}/b")).status_code == 404


async def test_requested_ip_out_of_range_or_malformed(ns: httpx.AsyncClient) -> None:
    r = await ns.post(SVC, json=svc("a", clusterIP="10.0.0.1"))
    assert r.status_code == 422
    assert r.json()["message"] == (
        'Service "a" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: '
        "failed to allocate IP 10.0.0.1: provided IP is not in the valid range. "
        "The range of valid IPs is 10.96.0.0/12")
    for bad in ("10.96.0.0", "10.111.255.255"):  # network and broadcast addresses
        r = await ns.post(SVC, json=svc("a", clusterIP=bad))
        assert r.status_code == 422 and "not in the valid range" in r.json()["message"]
    r = await ns.post(SVC, json=svc("a", clusterIP="not-an-ip"))
    assert r.status_code == 422
    assert "spec.clusterIPs[0]: Invalid value: \"not-an-ip\": must be a valid IP address" in \
        r.json()["message"]
    r = await ns.post(SVC, json=svc("a", clusterIP="10.96.0.5", clusterIPs=["10.96.0.6"]))
    assert r.status_code == 422 and "first value must match `clusterIP`" in r.json()["message"]


async def test_headless_and_external_name_get_no_ip(ns: httpx.AsyncClient, app: object) -> None:
    spec = (await create(ns, svc("h", clusterIP="None")))["spec"]
    assert spec["clusterIP"] == "None" and spec["clusterIPs"] == ["None"]
    spec = (await create(ns, {"metadata": {"name": "x"},
                              "spec": {"type": "ExternalName",
                                       "externalName": "example.org"}}))["spec"]
    assert "clusterIP" not in spec and "clusterIPs" not in spec
    store = app.ctx.store  # type: ignore[attr-defined]
    assert (await store.range("/registry/ranges/")).kvs == []


async def test_cluster_ip_is_immutable_and_kept_when_omitted(ns: httpx.AsyncClient) -> None:
    created = await create(ns, svc("a"))
    ip = created["spec"]["clusterIP"]
    r = await ns.patch(f"{SVC}/a", json={"spec": {"clusterIP": "10.96.0.77"}}, headers=MERGE)
    assert r.status_code == 422
    assert r.json()["message"] == (
        'Service "a" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.96.0.77"}: '
        "may not change once set")
    # A PUT that leaves clusterIP out (kubectl replace of the original file) keeps it.
    body = svc("a", ports=[{"port": 81}])
    r = await ns.put(f"{SVC}/a", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["clusterIP"] == ip and r.json()["spec"]["clusterIPs"] == [ip]
    assert r.json()["spec"]["ports"][0]["port"] == 81
    # Headless may not become a ClusterIP Service either.
    await create(ns, svc("h", clusterIP="None"))
    r = await ns.patch(f"{SVC}/h", json={"spec": {"clusterIP": "10.96.0.78",
                                                  "clusterIPs": ["10.96.0.78"]}}, headers=MERGE)
    assert r.status_code == 422 and "may not change once set" in r.json()["message"]


async def test_released_on_delete_and_reused(ns: httpx.AsyncClient, app: object) -> None:
    await create(ns, svc("a", clusterIP="10.96.0.20"))
    await create(ns, svc("b", clusterIP="10.96.0.20"), status=422)
    store = app.ctx.store  # type: ignore[attr-defined]
    assert await store.get("/registry/ranges/serviceips/10.96.0.20") is not None
    r = await ns.delete(f"{SVC}/a")
    assert r.status_code == 200
    assert await store.get("/registry/ranges/serviceips/10.96.0.20") is None
    spec = (await create(ns, svc("b", clusterIP="10.96.0.20")))["spec"]
    assert spec["clusterIP"] == "10.96.0.20"


async def test_dry_run_reserves_nothing(ns: httpx.AsyncClient, app: object) -> None:
    r = await ns.post(SVC + "?dryRun=All", json=svc("a", type_="NodePort"))
    assert r.status_code == 201
    spec = r.json()["spec"]
    assert spec["clusterIP"] and spec["ports"][0]["nodePort"]
    store = app.ctx.store  # type: ignore[attr-defined]
    assert (await store.range("/registry/ranges/")).kvs == []
    await create(ns, svc("b", clusterIP="10.96.0.30"))
    r = await ns.post(SVC + "?dryRun=All", json=svc("c", clusterIP="10.96.0.30"))
    assert r.status_code == 422 and "provided IP is already allocated" in r.json()["message"]


async def test_node_ports_allocated_requested_and_refused(ns: httpx.AsyncClient) -> None:
    spec = (await create(ns, svc("a", type_="NodePort", ports=[
        {"name": "http", "port": 80}, {"name": "https", "port": 443, "nodePort": 30443}])))["spec"]
    auto, asked = spec["ports"][0]["nodePort"], spec["ports"][1]["nodePort"]
    assert 30000 <= auto <= 32767 and auto != 30443 and asked == 30443
    r = await ns.post(SVC, json=svc("b", type_="NodePort", ports=[{"port": 80,
                                                                    "nodePort": 30443}]))
    assert r.status_code == 422
    assert r.json()["message"] == ('Service "b" is invalid: spec.ports[0].nodePort: Invalid '
                                   "value: 30443: provided port is already allocated")
    r = await ns.post(SVC, json=svc("b", type_="NodePort", ports=[{"port": 80,
                                                                    "nodePort": 8080}]))
    assert r.status_code == 422
    assert r.json()["message"] == (
        'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is '
        "not in the valid range. The range of valid ports is 30000-32767")
    r = await ns.post(SVC, json=svc("b", ports=[{"port": 80, "nodePort": 30444}]))
    assert r.status_code == 422
    assert "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" in \
        r.json()["message"]
    r = await ns.post(SVC, json=svc("b", type_="NodePort", ports=[
        {"name": "a", "port": 80, "nodePort": 30445}, {"name": "b", "port": 81,
                                                       "nodePort": 30445}]))
    assert r.status_code == 422
    assert "spec.ports[1].nodePort: Duplicate value: 30445" in r.json()["message"]
    # TCP and UDP of one port share a node port.
    spec = (await create(ns, svc("dns", type_="NodePort", ports=[
        {"name": "udp", "port": 53, "protocol": "UDP"},
        {"name": "tcp", "port": 53, "protocol": "TCP"}])))["spec"]
    assert spec["ports"][0]["nodePort"] == spec["ports"][1]["nodePort"]


async def test_type_changes_allocate_and_release(ns: httpx.AsyncClient, app: object) -> None:
    store = app.ctx.store  # type: ignore[attr-defined]
    await create(ns, svc("a", type_="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    r = await ns.patch(f"{SVC}/a", json={"spec": {"type": "ClusterIP"}}, headers=MERGE)
    assert r.status_code == 200, r.text
    assert "nodePort" not in r.json()["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in r.json()["spec"]
    assert await store.get("/registry/ranges/servicenodeports/30080") is None
    await create(ns, svc("b", type_="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    r = await ns.patch(f"{SVC}/a", json={"spec": {"type": "LoadBalancer"}}, headers=MERGE)
    assert r.status_code == 200, r.text
    port = r.json()["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767 and port != 30080
    # A PUT that omits the node port keeps it.
    body = (await ns.get(f"{SVC}/a")).json()
    del body["spec"]["ports"][0]["nodePort"]
    r = await ns.put(f"{SVC}/a", json=body)
    assert r.status_code == 200 and r.json()["spec"]["ports"][0]["nodePort"] == port
    # To ExternalName: the cluster IP goes back to the range; and back again.
    ip = r.json()["spec"]["clusterIP"]
    r = await ns.patch(f"{SVC}/a", json={"spec": {"type": "ExternalName",
                                                  "externalName": "example.org"}},
                       headers=MERGE)
    assert r.status_code == 200, r.text
    assert "clusterIP" not in r.json()["spec"]
    assert await store.get(f"/registry/ranges/serviceips/{ip}") is None
    assert await store.get(f"/registry/ranges/servicenodeports/{port}") is None
    r = await ns.patch(f"{SVC}/a", json={"spec": {"type": "ClusterIP", "externalName": None}},
                       headers=MERGE)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["clusterIP"]
    assert await store.get(f"/registry/ranges/serviceips/{r.json()['spec']['clusterIP']}")


async def test_load_balancer_node_ports(ns: httpx.AsyncClient) -> None:
    spec = (await create(ns, svc("lb", type_="LoadBalancer")))["spec"]
    assert spec["ports"][0]["nodePort"] and spec["allocateLoadBalancerNodePorts"] is True
    spec = (await create(ns, svc("lb2", type_="LoadBalancer",
                                 allocateLoadBalancerNodePorts=False)))["spec"]
    assert "nodePort" not in spec["ports"][0]
    spec = (await create(ns, svc("lb3", type_="LoadBalancer",
                                 externalTrafficPolicy="Local")))["spec"]
    assert 30000 <= spec["healthCheckNodePort"] <= 32767
    assert spec["healthCheckNodePort"] != spec["ports"][0]["nodePort"]
