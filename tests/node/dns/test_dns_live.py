"""The cluster DNS against the real in-process apiserver: the server on
127.0.0.1 at a free port, asked by dnspython's async stub resolver
configured from the resolv.conf a pod would get (search list, ndots:5),
so short names go through the search path as in a pod. Out-of-zone names
go to a stub upstream on loopback, never a real one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.resolver
import pytest

from kubevisor.client import Client
from kubevisor.node.dns import ClusterDNS, resolv_conf
from tests.node.dns.objects import endpoints, service
from tests.node.dns.stub import StubUpstream, stub_upstream


@contextlib.asynccontextmanager
async def running(cluster_dns: ClusterDNS) -> AsyncIterator[ClusterDNS]:
    task = asyncio.create_task(cluster_dns.run())
    try:
        await asyncio.wait_for(cluster_dns.listening.wait(), 10)
        await asyncio.wait_for(cluster_dns.server.ready.wait(), 10)
        yield cluster_dns
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def pod_resolver(tmp_path: Path, port: int, *, namespace: str = "default") -> dns.asyncresolver.Resolver:
    pod = {"metadata": {"name": "client", "namespace": namespace}, "spec": {}}
    conf = tmp_path / "resolv.conf"
    conf.write_text(resolv_conf(pod, nameserver="127.0.0.1"))
    resolver = dns.asyncresolver.Resolver(filename=str(conf))
    assert resolver.ndots == 5
    resolver.port = port
    resolver.nameservers = ["127.0.0.1"]
    resolver.lifetime = 5.0
    return resolver


async def a_records(resolver: dns.asyncresolver.Resolver, name: str, *, tcp: bool = False) -> list[str]:
    answer = await resolver.resolve(name, "A", search=True, tcp=tcp)
    return sorted(rd.address for rd in answer)


@pytest.fixture
async def stub() -> AsyncIterator[StubUpstream]:
    async with stub_upstream({"example.org.": "192.0.2.10"}) as upstream:
        yield upstream


async def test_names_resolve_as_in_a_pod(api: Client, stub: StubUpstream, tmp_path: Path) -> None:
    web = await api.create(service("web", ip=None,
                                   ports=[{"name": "http", "port": 80, "protocol": "TCP"}]))
    web_ip = web["spec"]["clusterIP"]
    assert web_ip and web_ip != "None"
    await api.create(service("db", ip="None", ports=[{"name": "pg", "port": 5432}]))
    await api.create(endpoints("db", [("10.88.0.7", "db-0"), "10.88.0.8"], not_ready=["10.88.0.9"],
                               ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    await api.create(service("ext", external_name="example.org"))

    cluster_dns = ClusterDNS(api, address="127.0.0.1", port=0,
                             upstreams=[("127.0.0.1", stub.port)], upstream_timeout=2.0)
    async with running(cluster_dns):
        resolver = pod_resolver(tmp_path, cluster_dns.server.port)
        for name in ("web", "web.default", "web.default.svc", "web.default.svc.cluster.local",
                     "web.default.svc.cluster.local."):
            assert await a_records(resolver, name) == [web_ip], name
        assert await a_records(resolver, "web", tcp=True) == [web_ip]

        srv = await resolver.resolve("_http._tcp.web.default.svc.cluster.local.", "SRV")
        assert [(r.port, str(r.target)) for r in srv] == [(80, "web.default.svc.cluster.local.")]

        ptr = await resolver.resolve_address(web_ip)
        assert [str(r.target) for r in ptr] == ["web.default.svc.cluster.local."]

        assert await a_records(resolver, "db") == ["10.88.0.7", "10.88.0.8"]
        assert await a_records(resolver, "db-0.db") == ["10.88.0.7"]
        pg = await resolver.resolve("_pg._tcp.db.default.svc.cluster.local.", "SRV")
        assert sorted(str(r.target) for r in pg) == ["10-88-0-8.db.default.svc.cluster.local.",
                                                     "db-0.db.default.svc.cluster.local."]

        with pytest.raises(dns.resolver.NXDOMAIN):
            await resolver.resolve("nope.default.svc.cluster.local.", "A")
        raw = await dns.asyncquery.udp(dns.message.make_query("nope.default.svc.cluster.local.", "A"),
                                       "127.0.0.1", port=cluster_dns.server.port, timeout=5)
        assert raw.rcode() == dns.rcode.NXDOMAIN and raw.flags & dns.flags.AA
        assert [r.rdtype for r in raw.authority] == [dns.rdatatype.SOA]

        # ExternalName: a CNAME, its target's address from the upstream
        ext = await resolver.resolve("ext", "A", search=True)
        assert str(ext.canonical_name) == "example.org."
        assert [rd.address for rd in ext] == ["192.0.2.10"]

        # outside the zone: forwarded (UDP, and TCP when asked over TCP)
        assert await a_records(resolver, "example.org.") == ["192.0.2.10"]
        assert await a_records(resolver, "example.org.", tcp=True) == ["192.0.2.10"]
        assert ("tcp", "example.org.", "A") in stub.seen
        with pytest.raises(dns.resolver.NXDOMAIN):
            await resolver.resolve("missing.example.", "A")
        assert ("udp", "missing.example.", "A") in stub.seen
        # in-zone names never reach the upstream
        assert not [s for s in stub.seen if s[1].endswith("cluster.local.")]


async def test_service_changes_show_without_restart(api: Client, stub: StubUpstream,
                                                    tmp_path: Path) -> None:
    cluster_dns = ClusterDNS(api, address="127.0.0.1", port=0, upstreams=[("127.0.0.1", stub.port)])
    async with running(cluster_dns):
        resolver = pod_resolver(tmp_path, cluster_dns.server.port, namespace="default")
        resolver.cache = None

        async def answers(name: str) -> list[str] | None:
            try:
                return await a_records(resolver, name)
            except dns.resolver.NXDOMAIN:
                return None

        async def until(name: str, expected: list[str] | None) -> None:
            for _ in range(100):
                if await answers(name) == expected:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{name}: {await answers(name)} is not {expected}")

        assert await answers("late") is None
        late = await api.create(service("late", ip=None))
        await until("late", [late["spec"]["clusterIP"]])
        await api.create(service("hl", ip="None"))
        await api.create(endpoints("hl", ["10.88.0.20"]))
        await until("hl", ["10.88.0.20"])
        current = await api.get("v1", "Endpoints", "hl", namespace="default")
        current["subsets"][0]["addresses"] = [{"ip": "10.88.0.21"}, {"ip": "10.88.0.22"}]
        await api.update(current)
        await until("hl", ["10.88.0.21", "10.88.0.22"])
        await api.delete("v1", "Service", "late", namespace="default")
        await until("late", None)


async def test_upstream_failure_is_servfail(api: Client, tmp_path: Path) -> None:
    async with stub_upstream({}) as dead:
        port = dead.port
    # nothing listens there now: every forwarded question fails
    cluster_dns = ClusterDNS(api, address="127.0.0.1", port=0, upstreams=[("127.0.0.1", port)],
                             upstream_timeout=0.5)
    async with running(cluster_dns):
        query = dns.message.make_query("example.org.", "A")
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=cluster_dns.server.port, timeout=5)
        assert reply.rcode() == dns.rcode.SERVFAIL
        # while the zone still answers
        reply = await dns.asyncquery.udp(dns.message.make_query("cluster.local.", "SOA"), "127.0.0.1",
                                         port=cluster_dns.server.port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer


async def test_big_udp_answers_are_truncated_then_whole_over_tcp(api: Client, tmp_path: Path) -> None:
    await api.create(service("many", ip="None"))
    await api.create(endpoints("many", [f"10.88.1.{i}" for i in range(1, 101)]))
    cluster_dns = ClusterDNS(api, address="127.0.0.1", port=0, upstreams=[])
    async with running(cluster_dns):
        port = cluster_dns.server.port
        query = dns.message.make_query("many.default.svc.cluster.local.", "A", use_edns=False)
        udp = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
        assert udp.flags & dns.flags.TC and not udp.answer
        tcp = await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=5)
        assert len(tcp.answer[0]) == 100
        with_edns = dns.message.make_query("many.default.svc.cluster.local.", "A", use_edns=0,
                                           payload=4096)
        big = await dns.asyncquery.udp(with_edns, "127.0.0.1", port=port, timeout=5)
        assert not big.flags & dns.flags.TC and len(big.answer[0]) == 100
