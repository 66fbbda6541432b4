"""The service proxy's nftables ruleset, rendered from ServiceRules (pure).

Called by :class:`~.proxy.NftServiceProxy` on every sync. The shape follows
kube-proxy's nftables mode:

- ``services`` (jumped to from nat prerouting, for pods and the world, and
  nat output, for the host itself) looks ``daddr . protocol . dport`` up in
  one verdict map (ClusterIPs and external IPs), then, for any local
  destination (every host address, 127.0.0.1 included), ``protocol .
  dport`` in the NodePort map;
- a per-service chain marks traffic from outside the cluster's pod range
  for masquerading and picks a backend chain with ``numgen random``;
- a backend chain marks hairpin traffic (a pod reaching itself through the
  service) for masquerading and DNATs to the backend;
- NodePort and external-IP entries go through a chain that always marks;
- ``nat_postrouting`` masquerades what carries the mark bit;
- services without backends are rejected in the filter hooks (TCP reset,
  ICMP port unreachable), so clients fail at once instead of hanging.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.types import ServiceRule


def check(rule: ServiceRule) -> None:
    try:
        for ip in (rule.cluster_ip, *rule.external_ips, *(b.ip for b in rule.backends)):
            ipaddress.IPv4Address(ip)
    except ValueError as exc:
        raise NetworkError(f"service {rule.name}: {exc}") from exc
    ports = [rule.port, *(b.port for b in rule.backends)]
    if rule.node_port is not None:
        ports.append(rule.node_port)
    if not all(0 < p < 65536 for p in ports):
        raise NetworkError(f"service {rule.name}: port out of range in {ports}")
    if rule.protocol not in ("TCP", "UDP"):
        raise NetworkError(f"service {rule.name}: protocol {rule.protocol!r}")


def _comment(text: str) -> str:
    return '"' + "".join(c for c in text if c.isprintable() and c not in '"\\')[:120] + '"'


def _elements(items: Sequence[str]) -> str:
    return f"    elements = {{ {', '.join(items)} }}\n" if items else ""


def render(rules: Sequence[ServiceRule], *, cluster_cidr: str, masquerade_bit: int,
           masquerade_pod_traffic: bool = False) -> str:
    """The body of the proxy's ``table ip`` for exactly ``rules``.

    ``cluster_cidr``: traffic from outside it to a ClusterIP is masqueraded.
    ``masquerade_pod_traffic``: masquerade pod→service traffic too (needed
    when bridged replies bypass conntrack, i.e. without br_netfilter).
    """
    mark = f"0x{masquerade_bit:x}"
    chains: list[str] = []
    service_ips: list[str] = []
    node_ports: list[str] = []
    no_endpoints: list[str] = []
    no_endpoint_node_ports: list[str] = []
    used: set[str] = set()

    for rule in rules:
        check(rule)
        proto = rule.protocol.lower()
        key = hashlib.sha256(f"{rule.protocol}/{rule.name}/{rule.cluster_ip}:{rule.port}".encode()).hexdigest()[:10]
        while key in used:
            key = hashlib.sha256(key.encode()).hexdigest()[:10]
        used.add(key)
        fronts = [rule.cluster_ip, *rule.external_ips]
        if not rule.backends:
            no_endpoints += [f"{ip} . {proto} . {rule.port}" for ip in fronts]
            if rule.node_port is not None:
                no_endpoint_node_ports.append(f"{proto} . {rule.node_port}")
            continue
        svc, ext = f"svc_{key}", f"ext_{key}"
        endpoint_chains = []
        for n, backend in enumerate(rule.backends):
            ep = f"ep_{key}_{n}"
            endpoint_chains.append(ep)
            chains.append(
                f"  chain {ep} {{\n"
                f"    ip saddr {backend.ip} jump mark_masq\n"
                f"    meta l4proto {proto} dnat to {backend.ip}:{backend.port}\n"
                "  }\n")
        verdicts = ", ".join(f"{n} : goto {ep}" for n, ep in enumerate(endpoint_chains))
        origin = "" if masquerade_pod_traffic else f"ip saddr != {cluster_cidr} "
        chains.append(
            f"  chain {svc} {{\n"
            f"    {origin}jump mark_masq\n"
            f"    numgen random mod {len(endpoint_chains)} vmap {{ {verdicts} }} comment {_comment(rule.name)}\n"
            "  }\n")
        service_ips.append(f"{rule.cluster_ip} . {proto} . {rule.port} : goto {svc}")
        if rule.node_port is not None or rule.external_ips:
            chains.append(f"  chain {ext} {{\n    jump mark_masq\n    goto {svc}\n  }}\n")
            service_ips += [f"{ip} . {proto} . {rule.port} : goto {ext}" for ip in rule.external_ips]
            if rule.node_port is not None:
                node_ports.append(f"{proto} . {rule.node_port} : goto {ext}")

    return "".join([
        f"  chain mark_masq {{\n    meta mark set meta mark | {mark}\n  }}\n",
        *chains,
        "  map service_ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n",
        _elements(service_ips), "  }\n",
        "  map service_nodeports {\n    type inet_proto . inet_service : verdict\n",
        _elements(node_ports), "  }\n",
        "  set no_endpoints {\n    type ipv4_addr . inet_proto . inet_service\n",
        _elements(no_endpoints), "  }\n",
        "  set no_endpoint_nodeports {\n    type inet_proto . inet_service\n",
        _elements(no_endpoint_node_ports), "  }\n",
        "  chain services {\n"
        "    ip daddr . meta l4proto . th dport vmap @service_ips\n"
        "    fib daddr type local meta l4proto . th dport vmap @service_nodeports\n"
        "  }\n",
        "  chain nat_prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        "    jump services\n  }\n",
        "  chain nat_output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        "    jump services\n  }\n",
        "  chain nat_postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    meta mark & {mark} == 0 return\n"
        f"    meta mark set meta mark ^ {mark}\n"
        "    masquerade\n  }\n",
        "  chain reject_it {\n"
        "    meta l4proto tcp reject with tcp reset\n"
        "    reject with icmp type port-unreachable\n  }\n",
        "  chain no_endpoint_services {\n"
        "    ip daddr . meta l4proto . th dport @no_endpoints goto reject_it\n"
        "    fib daddr type local meta l4proto . th dport @no_endpoint_nodeports goto reject_it\n"
        "  }\n",
        *(f"  chain filter_{hook} {{\n"
          f"    type filter hook {hook} priority filter - 10; policy accept;\n"
          "    jump no_endpoint_services\n  }\n" for hook in ("input", "forward", "output")),
    ])
