"""The rendered rules (pure), and the kernel taking them (``nft -c``, root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.network import NetworkConfig, nft, rules
from kubevisor.runtime.network.iptables import render_services, restore_input
from kubevisor.runtime.types import ServiceBackend, ServiceRule

CFG = NetworkConfig.with_prefix("kvtr", pod_cidr="10.210.3.0/24", service_cidr="10.211.3.0/24",
                                state_dir="/nonexistent")


def _web(**kwargs: object) -> ServiceRule:
    return ServiceRule(name="default/web:http", protocol="TCP", cluster_ip="10.211.3.10", port=80,
                       backends=[ServiceBackend("10.210.3.2", 8080), ServiceBackend("10.210.3.3", 8080)],
                       **kwargs)  # type: ignore[arg-type]


def _render(rs: list[ServiceRule], **kwargs: bool) -> str:
    return rules.render(rs, cluster_cidr=CFG.masquerade_boundary, masquerade_bit=0x4000, **kwargs)


def test_cluster_ip_is_a_random_pick_of_backend_chains() -> None:
    body = _render([_web()])
    assert "10.211.3.10 . tcp . 80 : goto svc_" in body
    assert "numgen random mod 2 vmap { 0 : goto ep_" in body
    assert "dnat to 10.210.3.2:8080" in body and "dnat to 10.210.3.3:8080" in body
    assert "ip saddr 10.210.3.2 jump mark_masq" in body  # hairpin
    assert "ip saddr != 10.210.3.0/24 jump mark_masq" in body  # off-cluster clients
    assert "ext_" not in body  # no NodePort, no external IP


def test_without_br_netfilter_every_pod_connection_is_masqueraded() -> None:
    body = _render([_web()], masquerade_pod_traffic=True)
    assert "ip saddr != 10.210.3.0/24" not in body
    assert "    jump mark_masq\n    numgen" in body


def test_node_port_and_external_ip_always_masquerade() -> None:
    body = _render([_web(node_port=30080, external_ips=["10.211.3.250"])])
    assert "tcp . 30080 : goto ext_" in body
    assert "10.211.3.250 . tcp . 80 : goto ext_" in body
    ext = body[body.index("chain ext_"):]
    assert ext.split("}")[0].split("\n")[1].strip() == "jump mark_masq"


def test_no_backends_rejects_and_does_not_dnat() -> None:
    body = _render([ServiceRule("ns/empty:dns", "UDP", "10.211.3.11", 53, [], node_port=30053,
                                external_ips=["10.211.3.251"])])
    assert "dnat" not in body
    assert "10.211.3.11 . udp . 53, 10.211.3.251 . udp . 53" in body
    assert "udp . 30053" in body
    assert "reject with tcp reset" in body and "reject with icmp type port-unreachable" in body


def test_bad_rules_are_refused() -> None:
    with pytest.raises(NetworkError, match="web"):
        _render([_web(external_ips=["not-an-ip"])])
    with pytest.raises(NetworkError, match="port"):
        _render([ServiceRule("ns/x:0", "TCP", "10.211.3.12", 0, [])])


def test_same_name_twice_gets_distinct_chains() -> None:
    body = _render([_web(), _web()])
    assert body.count("chain svc_") == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="nft -c needs root")
async def test_kernel_accepts_a_large_ruleset() -> None:
    many = [ServiceRule(f"ns/s{i}:p", "TCP" if i % 2 else "UDP", f"10.211.{i // 250}.{i % 250 + 1}",
                        80, [ServiceBackend(f"10.210.3.{j + 2}", 8080) for j in range(i % 4)],
                        node_port=30000 + i if i % 3 == 0 else None)
            for i in range(500)]
    await nft.run(nft.replace_table("kvtrcheck", _render(many)), check_only=True)
    await nft.run(nft.replace_table("kvtrcheck", _render([])), check_only=True)
    assert "kvtrcheck" not in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                             text=True).stdout


def test_iptables_probabilities_and_chain_names() -> None:
    tables = render_services(CFG, [_web(node_port=30080)])
    nat = tables["nat"]
    svc = next(c for c in nat if "-SVC-" in c)
    assert "--probability 0.5000000000" in nat[svc][1] and "statistic" not in nat[svc][2]
    assert all(len(c) <= 28 for c in nat)
    assert any("--dport 30080" in r for r in nat["KVTR-NODEPORTS"])


def test_iptables_restore_deletes_stale_chains_and_hooks_once() -> None:
    text = restore_input("nat", {"KVTR-SERVICES": ["-j RETURN"]}, prefix="KVTR",
                         existing={"PREROUTING", "KVTR-SERVICES", "KVTR-SVC-old", "KVTR_NODE-POSTROUTING"},
                         hooked={("OUTPUT", "KVTR-SERVICES"), ("POSTROUTING", "KVTR-POSTROUTING")},
                         hooks=[("PREROUTING", "SERVICES"), ("OUTPUT", "SERVICES")])
    lines = text.splitlines()
    assert "-I PREROUTING 1 -j KVTR-SERVICES" in lines
    assert "-I OUTPUT 1 -j KVTR-SERVICES" not in lines  # already there
    assert "-D POSTROUTING -j KVTR-POSTROUTING" in lines
    assert lines.index(":KVTR-SVC-old - [0:0]") < lines.index("-X KVTR-SVC-old")
    assert not any("KVTR_NODE" in x for x in lines)  # the bridge's chains are not the proxy's
    assert lines[-1] == "COMMIT"
