"""What the pod worker knows about one pod besides the API object: the
runtime's containers, the network, probe results and failures that are
waiting out a back-off. Plain data handed to the pure
:func:`kubevisor.node.plan.plan` and :func:`kubevisor.node.podstatus.pod_status`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kubevisor.runtime.types import ContainerState, PodNetworkInfo


@dataclass(frozen=True, slots=True)
class Blocked:
    """A container that could not be started (image pull, config error)
    and is not retried before ``retry_at``."""

    reason: str  # ErrImagePull, ImagePullBackOff, CreateContainerConfigError, ...
    message: str
    retry_at: float


@dataclass(frozen=True, slots=True)
class PodState:
    containers: Mapping[str, Sequence[ContainerState]] = field(default_factory=dict)
    network: PodNetworkInfo | None = None
    blocked: Mapping[str, Blocked] = field(default_factory=dict)
    #: Container id -> result of its readiness probe (absent: no result yet).
    ready: Mapping[str, bool] = field(default_factory=dict)
    #: Container ids whose startup probe succeeded.
    started: frozenset[str] = frozenset()
    #: Container id -> why it must be restarted (liveness/startup probe failure).
    unhealthy: Mapping[str, str] = field(default_factory=dict)
    #: Container ids being stopped by the worker right now.
    stopping: frozenset[str] = frozenset()
