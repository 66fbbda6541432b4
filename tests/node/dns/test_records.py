"""Name → answer over cached Services and Endpoints, as CoreDNS's
kubernetes plugin answers: A, SRV, PTR, headless, hostnames, ExternalName,
pod names, the apex, NXDOMAIN vs NODATA, and the reverse/outside split."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from kubevisor.node.dns.catalog import Catalog
from kubevisor.node.dns.records import Lookup, Zone
from tests.node.dns.objects import endpoints, service

A, AAAA, SRV, PTR = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV, dns.rdatatype.PTR


@pytest.fixture
def zone() -> Zone:
    catalog = Catalog(
        [service("web", ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "protocol": "UDP"},
                               {"port": 9000, "protocol": "TCP"}]),
         service("db", ip="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
         service("empty", ip="None"),
         service("ext", external_name="example.org"),
         service("alias", external_name="web.default.svc.cluster.local"),
         service("loop", external_name="loop.default.svc.cluster.local"),
         service("api", namespace="shop", ip="10.96.1.1")],
        [endpoints("web", ["10.88.0.5", "10.88.0.6"], not_ready=["10.88.0.9"]),
         endpoints("db", [("10.88.0.7", "db-0"), ("10.88.0.8", "db-1"), "10.88.0.10"],
                   not_ready=["10.88.0.11"],
                   ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])])
    return Zone(catalog, server_ip="10.88.0.1")


def ask(zone: Zone, name: str, rdtype: dns.rdatatype.RdataType = A) -> Lookup:
    return zone.lookup(dns.name.from_text(name), rdtype)


def texts(found: Lookup, section: str = "answer") -> list[str]:
    return sorted(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}"
                  for rrset in getattr(found, section) for rd in rrset)


def test_service_a_is_the_cluster_ip(zone: Zone) -> None:
    found = ask(zone, "web.default.svc.cluster.local.")
    assert found.rcode == dns.rcode.NOERROR and found.authoritative and not found.forward
    assert texts(found) == ["web.default.svc.cluster.local. A 10.96.0.10"]
    assert found.answer[0].ttl == 5
    # case-insensitive, and the answer keeps the question's spelling
    assert texts(ask(zone, "WEB.Default.SVC.cluster.LOCAL.")) == \
        ["WEB.Default.SVC.cluster.LOCAL. A 10.96.0.10"]
    assert texts(ask(zone, "api.shop.svc.cluster.local.")) == ["api.shop.svc.cluster.local. A 10.96.1.1"]


def test_missing_names_are_nxdomain_with_soa(zone: Zone) -> None:
    for name in ("nope.default.svc.cluster.local.", "web.other.svc.cluster.local.",
                 "web.default.cluster.local.", "a.b.web.default.svc.cluster.local.",
                 "x.web.default.svc.cluster.local.", "nothing.cluster.local.",
                 "web.default.svc.cluster.local.default.svc.cluster.local."):
        found = ask(zone, name)
        assert found.rcode == dns.rcode.NXDOMAIN, name
        assert not found.answer
        assert [dns.rdatatype.to_text(r.rdtype) for r in found.authority] == ["SOA"]
        assert str(found.authority[0].name) == "cluster.local."


def test_existing_name_without_the_type_is_nodata(zone: Zone) -> None:
    for name, rdtype in (("web.default.svc.cluster.local.", AAAA),
                         ("web.default.svc.cluster.local.", dns.rdatatype.TXT),
                         ("default.svc.cluster.local.", A), ("svc.cluster.local.", A),
                         ("_tcp.web.default.svc.cluster.local.", A),
                         ("empty.default.svc.cluster.local.", A)):
        found = ask(zone, name, rdtype)
        assert (found.rcode, found.answer) == (dns.rcode.NOERROR, []), name
        assert found.authority and found.authority[0].rdtype == dns.rdatatype.SOA


def test_headless_answers_ready_endpoints(zone: Zone) -> None:
    assert texts(ask(zone, "db.default.svc.cluster.local.")) == [
        "db.default.svc.cluster.local. A 10.88.0.10", "db.default.svc.cluster.local. A 10.88.0.7",
        "db.default.svc.cluster.local. A 10.88.0.8"]
    assert texts(ask(zone, "db-1.db.default.svc.cluster.local.")) == \
        ["db-1.db.default.svc.cluster.local. A 10.88.0.8"]
    # an address without hostname is named by its dashed IP
    assert texts(ask(zone, "10-88-0-10.db.default.svc.cluster.local.")) == \
        ["10-88-0-10.db.default.svc.cluster.local. A 10.88.0.10"]
    # not-ready addresses are never answered
    assert ask(zone, "10-88-0-11.db.default.svc.cluster.local.").rcode == dns.rcode.NXDOMAIN


def test_srv_for_named_ports(zone: Zone) -> None:
    found = ask(zone, "_http._tcp.web.default.svc.cluster.local.", SRV)
    assert texts(found) == ["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."]
    assert texts(found, "additional") == ["web.default.svc.cluster.local. A 10.96.0.10"]
    assert texts(ask(zone, "_dns._udp.web.default.svc.cluster.local.", SRV)) == \
        ["_dns._udp.web.default.svc.cluster.local. SRV 0 100 53 web.default.svc.cluster.local."]
    for name in ("_http._udp.web.default.svc.cluster.local.", "_x._tcp.web.default.svc.cluster.local.",
                 "http.tcp.web.default.svc.cluster.local."):
        assert ask(zone, name, SRV).rcode == dns.rcode.NXDOMAIN, name
    # SRV on the service itself: every port
    every = texts(ask(zone, "web.default.svc.cluster.local.", SRV))
    assert [t.split()[-2] for t in every] == ["53", "80", "9000"]


def test_headless_srv_targets_each_endpoint(zone: Zone) -> None:
    found = ask(zone, "_pg._tcp.db.default.svc.cluster.local.", SRV)
    assert texts(found) == [
        "_pg._tcp.db.default.svc.cluster.local. SRV 0 33 5432 10-88-0-10.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. SRV 0 33 5432 db-0.db.default.svc.cluster.local.",
        "_pg._tcp.db.default.svc.cluster.local. SRV 0 33 5432 db-1.db.default.svc.cluster.local."]
    assert "db-0.db.default.svc.cluster.local. A 10.88.0.7" in texts(found, "additional")


def test_ptr_for_cluster_and_endpoint_ips(zone: Zone) -> None:
    assert texts(ask(zone, "10.0.96.10.in-addr.arpa.", PTR)) == \
        ["10.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."]
    assert texts(ask(zone, "8.0.88.10.in-addr.arpa.", PTR)) == \
        ["8.0.88.10.in-addr.arpa. PTR db-1.db.default.svc.cluster.local."]
    # an address nobody owns, or a partial reverse name, is the upstream's
    assert ask(zone, "99.0.96.10.in-addr.arpa.", PTR).forward
    assert ask(zone, "96.10.in-addr.arpa.", PTR).forward


def test_external_name_is_a_cname(zone: Zone) -> None:
    found = ask(zone, "ext.default.svc.cluster.local.")
    assert texts(found) == ["ext.default.svc.cluster.local. CNAME example.org."]
    assert found.chase == dns.name.from_text("example.org.")
    inside = ask(zone, "alias.default.svc.cluster.local.")
    assert texts(inside) == ["alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
                             "web.default.svc.cluster.local. A 10.96.0.10"]
    assert inside.chase is None
    looped = ask(zone, "loop.default.svc.cluster.local.")  # a loop stops where it repeats
    assert texts(looped) == ["loop.default.svc.cluster.local. CNAME loop.default.svc.cluster.local."]


def test_pod_names_apex_and_outside(zone: Zone) -> None:
    assert texts(ask(zone, "10-88-0-42.default.pod.cluster.local.")) == \
        ["10-88-0-42.default.pod.cluster.local. A 10.88.0.42"]
    assert ask(zone, "10-88-0.default.pod.cluster.local.").rcode == dns.rcode.NXDOMAIN
    soa = ask(zone, "cluster.local.", dns.rdatatype.SOA)
    assert texts(soa)[0].startswith("cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. ")
    ns = ask(zone, "cluster.local.", dns.rdatatype.NS)
    assert texts(ns) == ["cluster.local. NS ns.dns.cluster.local."]
    assert texts(ns, "additional") == ["ns.dns.cluster.local. A 10.88.0.1"]
    assert texts(ask(zone, "dns-version.cluster.local.", dns.rdatatype.TXT)) == \
        ['dns-version.cluster.local. TXT "1.1.0"']
    outside = ask(zone, "example.org.")
    assert outside.forward and not outside.authoritative


def test_changes_show_and_move_the_serial() -> None:
    catalog = Catalog(clock=lambda: 1000.0)
    zone = Zone(catalog, zone="k8s.test")
    assert ask(zone, "web.default.svc.k8s.test.").rcode == dns.rcode.NXDOMAIN
    serial = catalog.serial
    on_service, on_endpoints = catalog.handler("Service"), catalog.handler("Endpoints")
    on_service("ADDED", service("web", ip="None"), None)
    on_endpoints("ADDED", endpoints("web", ["10.88.0.5"]), None)
    assert catalog.serial > serial
    assert texts(ask(zone, "web.default.svc.k8s.test.")) == ["web.default.svc.k8s.test. A 10.88.0.5"]
    assert texts(ask(zone, "5.0.88.10.in-addr.arpa.", PTR)) == \
        ["5.0.88.10.in-addr.arpa. PTR 10-88-0-5.web.default.svc.k8s.test."]
    on_endpoints("MODIFIED", endpoints("web", ["10.88.0.6"]), None)
    assert texts(ask(zone, "web.default.svc.k8s.test.")) == ["web.default.svc.k8s.test. A 10.88.0.6"]
    assert ask(zone, "5.0.88.10.in-addr.arpa.", PTR).forward
    on_service("DELETED", service("web", ip="None"), None)
    assert ask(zone, "web.default.svc.k8s.test.").rcode == dns.rcode.NXDOMAIN
    assert ask(zone, "default.svc.k8s.test.").rcode == dns.rcode.NXDOMAIN
