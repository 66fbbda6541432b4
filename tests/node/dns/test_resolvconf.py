"""A pod's /etc/resolv.conf as kubelet composes it: every dnsPolicy, the
hostNetwork fallback, dnsConfig merging and kubelet's limits."""

from __future__ import annotations

from pathlib import Path

from kubevisor.node.dns import gateway_address
from kubevisor.node.dns.resolvconf import (
    HostResolv,
    parse_resolv_conf,
    pod_dns,
    read_pod_host_resolv,
    resolv_conf,
    write_resolv_conf,
)

HOST = HostResolv(nameservers=("192.0.2.53", "192.0.2.54"), searches=("corp.example",),
                  options=("timeout:2", "rotate"))


def _pod(**spec: object) -> dict:
    return {"metadata": {"name": "p", "namespace": "shop"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def test_cluster_first_is_the_default() -> None:
    text = resolv_conf(_pod(), nameserver="10.88.0.1", host=HOST)
    assert text == ("search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
                    "nameserver 10.88.0.1\n"
                    "options ndots:5\n")
    assert pod_dns(_pod(dnsPolicy="ClusterFirst"), nameserver="10.88.0.1", host=HOST) == \
        pod_dns(_pod(), nameserver="10.88.0.1", host=HOST)


def test_zone_is_configurable_and_host_duplicates_dropped() -> None:
    host = HostResolv(nameservers=("192.0.2.53",), searches=("svc.k8s.test", "a.example"))
    dns = pod_dns(_pod(), nameserver="10.88.0.1", zone="k8s.test.", host=host)
    assert dns.searches == ("shop.svc.k8s.test", "svc.k8s.test", "k8s.test", "a.example")


def test_default_policy_copies_the_host() -> None:
    dns = pod_dns(_pod(dnsPolicy="Default"), nameserver="10.88.0.1", host=HOST)
    assert dns.nameservers == HOST.nameservers
    assert dns.searches == HOST.searches
    assert dns.options == HOST.options
    assert dns.render().splitlines() == ["search corp.example", "nameserver 192.0.2.53",
                                         "nameserver 192.0.2.54", "options timeout:2 rotate"]


def test_none_policy_is_only_dns_config() -> None:
    pod = _pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["x.test"],
                                            "options": [{"name": "ndots", "value": "2"},
                                                        {"name": "edns0"}]})
    assert resolv_conf(pod, nameserver="10.88.0.1", host=HOST) == (
        "search x.test\nnameserver 1.1.1.1\noptions ndots:2 edns0\n")
    assert resolv_conf(_pod(dnsPolicy="None"), nameserver="10.88.0.1", host=HOST) == ""


def test_host_network_falls_back_to_default_unless_with_host_net() -> None:
    host_pod = _pod(hostNetwork=True)
    assert pod_dns(host_pod, nameserver="10.88.0.1", host=HOST).nameservers == HOST.nameservers
    with_net = _pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    assert pod_dns(with_net, nameserver="10.88.0.1", host=HOST).nameservers == ("10.88.0.1",)
    # ClusterFirstWithHostNet on a pod network pod is plain ClusterFirst
    assert pod_dns(_pod(dnsPolicy="ClusterFirstWithHostNet"), nameserver="10.88.0.1",
                   host=HOST).options == ("ndots:5",)


def test_no_cluster_dns_falls_back_with_kubelets_warning() -> None:
    dns = pod_dns(_pod(), nameserver=None, host=HOST)
    assert dns.nameservers == HOST.nameservers
    [(reason, message)] = dns.warnings
    assert reason == "MissingClusterDNS" and 'Falling back to "Default" policy' in message


def test_dns_config_merges_as_kubelet_does() -> None:
    pod = _pod(dnsConfig={"nameservers": ["10.88.0.1", "192.0.2.9"],
                          "searches": ["cluster.local", "extra.test"],
                          "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]})
    dns = pod_dns(pod, nameserver="10.88.0.1", host=HostResolv())
    assert dns.nameservers == ("10.88.0.1", "192.0.2.9")  # duplicates dropped
    assert dns.searches == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local",
                            "extra.test")
    assert dns.options == ("ndots:1", "single-request")  # the pod's value wins
    assert not dns.warnings


def test_limits_cut_and_warn() -> None:
    pod = _pod(dnsPolicy="None",
               dnsConfig={"nameservers": [f"192.0.2.{i}" for i in range(1, 6)],
                          "searches": [f"d{i}.example" for i in range(40)] + ["x" * 254]})
    dns = pod_dns(pod, nameserver="10.88.0.1")
    assert dns.nameservers == ("192.0.2.1", "192.0.2.2", "192.0.2.3")
    assert len(dns.searches) == 32 and dns.searches[-1] == "d31.example"
    assert {reason for reason, _ in dns.warnings} == {"DNSConfigForming"}
    assert any(m.startswith("Nameserver limits were exceeded") for _, m in dns.warnings)
    assert any(m.startswith("Search Line limits were exceeded") for _, m in dns.warnings)
    long = _pod(dnsPolicy="None", dnsConfig={"searches": [f"{i:02d}" + "y" * 200 for i in range(20)]})
    cut = pod_dns(long, nameserver=None).searches
    assert len(" ".join(cut)) <= 2048 and len(cut) == 10


def test_parse_as_kubelet() -> None:
    host = parse_resolv_conf("# comment\nnameserver 192.0.2.1\nsearch a.example. b.example\n"
                             "options ndots:2\nnameserver 192.0.2.2\nsearch c.example.\n"
                             "options rotate\n; also a comment\nnameserver\n")
    assert host == HostResolv(("192.0.2.1", "192.0.2.2"), ("c.example",), ("rotate",))


def test_loopback_stub_replaced_by_systemd_upstreams(tmp_path: Path) -> None:
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
    real = tmp_path / "real.conf"
    assert read_pod_host_resolv(stub, fallback=real).nameservers == ("127.0.0.53",)
    real.write_text("nameserver 192.0.2.1\nsearch lan\n")
    assert read_pod_host_resolv(stub, fallback=real) == HostResolv(("192.0.2.1",), ("lan",), ())
    plain = tmp_path / "plain.conf"
    plain.write_text("nameserver 192.0.2.7\n")
    assert read_pod_host_resolv(plain, fallback=real).nameservers == ("192.0.2.7",)
    assert read_pod_host_resolv(tmp_path / "missing").nameservers == ()


def test_write_resolv_conf_and_the_gateway(tmp_path: Path) -> None:
    etc = tmp_path / "pod" / "etc"
    nameserver = gateway_address("10.88.3.0/24")
    assert nameserver == "10.88.3.1"
    written = write_resolv_conf(_pod(), etc, nameserver=nameserver, host=HOST)
    assert (etc / "resolv.conf").read_text() == written.render()
    assert (etc / "resolv.conf").stat().st_mode & 0o777 == 0o644
    assert "nameserver 10.88.3.1\n" in written.render()
    again = write_resolv_conf(_pod(dnsPolicy="Default"), etc, nameserver=nameserver, host=HOST)
    assert (etc / "resolv.conf").read_text() == again.render() != written.render()
    assert [p.name for p in etc.iterdir()] == ["resolv.conf"]
