"""Cluster DNS for the node agent: Service names resolve inside pods.

One server per node (:class:`ClusterDNS`, on the pod bridge's gateway, port
53) answers the cluster zone from Services and Endpoints as CoreDNS's
kubernetes plugin does (:mod:`.records`) and forwards other names to the
host's resolvers (:mod:`.upstream`); :func:`resolv_conf` writes a pod's
/etc/resolv.conf as kubelet does (:mod:`.resolvconf`).
"""

from kubevisor.node.dns.catalog import Catalog
from kubevisor.node.dns.clusterdns import ClusterDNS, gateway_address
from kubevisor.node.dns.errors import DNSError, DNSServerError
from kubevisor.node.dns.records import Lookup, Zone
from kubevisor.node.dns.resolvconf import (
    DEFAULT_ZONE,
    HostResolv,
    PodDNS,
    parse_resolv_conf,
    pod_dns,
    read_host_resolv,
    read_pod_host_resolv,
    resolv_conf,
    write_resolv_conf,
)
from kubevisor.node.dns.server import DNSServer
from kubevisor.node.dns.upstream import Upstream, host_upstreams

__all__ = [
    "DEFAULT_ZONE",
    "Catalog",
    "ClusterDNS",
    "DNSError",
    "DNSServer",
    "DNSServerError",
    "HostResolv",
    "Lookup",
    "PodDNS",
    "Upstream",
    "Zone",
    "gateway_address",
    "host_upstreams",
    "parse_resolv_conf",
    "pod_dns",
    "read_host_resolv",
    "read_pod_host_resolv",
    "resolv_conf",
    "write_resolv_conf",
]
