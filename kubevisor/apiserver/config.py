"""What the apiserver needs to run, assembled by the CLI (``kubevisor up``)
or by tests: the store, the kinds, who may call it and limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubevisor.api.kinds import Registry
from kubevisor.store.base import Store


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


@dataclass(frozen=True, slots=True)
class KubeletClient:
    """How the apiserver reaches node agents for pod streams (logs, exec,
    attach, port-forward): their certificates are checked against
    ``ca_file`` and it presents ``token``."""

    ca_file: str = ""
    token: str = ""
    timeout_seconds: float = 10.0


@dataclass(slots=True)
class ServerConfig:
    store: Store
    registry: Registry
    # Bearer token -> user. A request without a known token gets 401.
    tokens: Mapping[str, UserInfo] = field(default_factory=dict)
    # Requests with a larger body get 413 (kube-apiserver: 3 MiB).
    max_body_bytes: int = 3 * 1024 * 1024
    # Revisions older than this many seconds are compacted (kube-apiserver: 5 min).
    compaction_interval_seconds: float = 300.0
    # Server version reported on /version.
    git_version: str = "v1.32.0-kubevisor"
    # Services: ClusterIPs come from this CIDR, node ports from this range
    # (kube-apiserver's --service-cluster-ip-range, --service-node-port-range).
    service_cidr: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    # Where the ``kubernetes`` Service's endpoints point (kube-apiserver's
    # --advertise-address and secure port); unset: no such Service is kept.
    advertise_address: str = ""
    advertise_port: int = 0
    # Credentials for node agents' stream endpoints; None: pod streams answer 503.
    kubelet_client: KubeletClient | None = None
