"""The node agent's settings, one frozen record built by
:func:`kubevisor.node.agent.run_node` (or a test) and read by every part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KUBELET_VERSION = "v1.32.0-kubevisor"
LEASE_NAMESPACE = "kube-node-lease"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What one agent is told. Durations are seconds."""

    node_name: str
    data_dir: Path
    pod_cidr: str | None = None
    node_ip: str | None = None
    max_pods: int = 110
    #: Subtracted from capacity to give allocatable (kube-reserved + eviction threshold).
    reserved_cpu_millis: int = 100
    reserved_memory_bytes: int = 100 * 1024 * 1024
    reserved_storage_fraction: float = 0.1
    labels: dict[str, str] = field(default_factory=dict)
    #: Annotations the agent keeps on its Node (e.g. the VM accelerator in use).
    annotations: dict[str, str] = field(default_factory=dict)
    instance_type: str | None = None
    lease_duration_seconds: int = 40
    lease_renew_seconds: float = 10.0
    status_report_seconds: float = 300.0
    status_check_seconds: float = 10.0
    #: How often configMap/secret/downwardAPI/projected volume files are refreshed.
    volume_resync_seconds: float = 60.0
    #: The admin token put into projected service-account token volumes when
    #: the apiserver offers no TokenRequest.
    token: str = ""
    ca_pem: str = ""
    #: The cluster DNS server pods' resolv.conf names (None: the host's resolvers).
    cluster_dns: str | None = None
    cluster_domain: str = "cluster.local"
    #: The stream server's port, published in Node.status.daemonEndpoints.
    kubelet_port: int = 10250

    @property
    def pods_dir(self) -> Path:
        return self.data_dir / "pods"
