"""The contract between the node agent and the runtime drivers.

Plain data in, plain data out: no Kubernetes object crosses this line. The
node agent builds these specs from a Pod; each driver (``oci``, ``images``,
``network``) implements one Protocol here and states its failure rule in
its docstring. One contract test suite per Protocol runs against every
real backend (runc and crun for :class:`ContainerRuntime`).

Failure rule shared by every driver: an operation that raises leaves
nothing behind (no half-created container, mount, veth or address), and
every teardown is idempotent (tearing down what is already gone succeeds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

# --------------------------------------------------------------- containers


@dataclass(frozen=True, slots=True)
class Mount:
    """A mount inside a container. ``kind`` "bind" takes ``source`` from the
    host; "tmpfs" ignores ``source``."""

    destination: str
    source: str = ""
    kind: Literal["bind", "tmpfs"] = "bind"
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Resources:
    """cgroup settings; None leaves a knob unset. CPU in millicores, as
    Kubernetes counts it (requests → shares, limits → quota/period)."""

    cpu_request_millis: int | None = None
    cpu_limit_millis: int | None = None
    memory_limit_bytes: int | None = None
    pids_limit: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container to create and start.

    ``id`` is unique on the host and stable across agent restarts (the agent
    derives it from pod uid, container name and attempt). ``rootfs`` is a
    directory prepared by the image store. ``netns`` is the path of the
    pod's network namespace (``/run/netns/...``), shared by the pod's
    containers; None gives the container a namespace of its own. ``labels``
    are kept with the container and returned by ``list()``, so a restarted
    agent knows what each container is. ``log_path`` receives stdout and
    stderr in the CRI log format (``<RFC3339Nano> <stream> <F|P> <line>``),
    written by something that outlives the agent.
    """

    id: str
    rootfs: str
    args: Sequence[str]
    log_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    hostname: str = ""
    netns: str | None = None
    mounts: Sequence[Mount] = ()
    resources: Resources = field(default_factory=Resources)
    tty: bool = False
    stdin: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


ContainerStatus = Literal["created", "running", "stopped"]


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What the runtime knows of one container. Times are Unix seconds."""

    id: str
    status: ContainerStatus
    pid: int = 0
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: "OOMKilled" when the kernel's OOM killer ended it, else "Error"/"Completed".
    reason: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RuntimeCapabilities:
    """What this host's OCI runtime can enforce, detected at start."""

    name: str  # "runc" or "crun"
    version: str
    cgroup_mode: Literal["v1", "hybrid", "v2", "none"]
    cpu_limits: bool
    memory_limits: bool
    pids_limits: bool


class ExecProcess(Protocol):
    """A process started in a running container by ``exec``; its streams
    are raw bytes (one merged stream when ``tty``)."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def read(self) -> tuple[Literal["stdout", "stderr"], bytes] | None:
        """Next chunk of output, or None at the end of both streams."""
    async def resize(self, cols: int, rows: int) -> None: ...
    async def wait(self) -> int: ...
    async def kill(self) -> None: ...


class ContainerRuntime(Protocol):
    """Containers on this host (runc or crun underneath).

    Containers outlive the agent: ``list()`` after an agent restart returns
    every container this runtime created and has not removed, with its labels.
    """

    capabilities: RuntimeCapabilities

    async def run(self, spec: ContainerSpec) -> ContainerState:
        """Create and start; on failure nothing is left and a
        :class:`~kubevisor.runtime.errors.ContainerError` says why."""
    async def state(self, container_id: str) -> ContainerState | None: ...
    async def list(self) -> list[ContainerState]: ...
    async def stop(self, container_id: str, *, grace_seconds: float) -> ContainerState:
        """SIGTERM, wait up to the grace period, then SIGKILL; returns the final state."""
    async def signal(self, container_id: str, signum: int) -> None: ...
    async def remove(self, container_id: str) -> None:
        """Delete a stopped container and its bundle; idempotent. The log file stays."""
    async def exec(self, container_id: str, args: Sequence[str], *, tty: bool = False,
                   stdin: bool = False, env: Mapping[str, str] | None = None) -> ExecProcess: ...


# ------------------------------------------------------------------- images


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an OCI image config a container needs."""

    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = ()  # "K=V" as in the image config
    working_dir: str = ""
    user: str = ""
    exposed_ports: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Image:
    """A pulled image: ``id`` is the config digest (what kubelet reports as
    imageID's digest part), ``digest`` the manifest digest, ``ref`` as asked."""

    ref: str
    id: str
    digest: str
    config: ImageConfig
    size: int


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    """Credentials for one registry (from an imagePullSecret)."""

    username: str = ""
    password: str = ""
    token: str = ""


#: Progress callback: (what, done_bytes, total_bytes or None).
Progress = Callable[[str, int, int | None], None]


class ImageStore(Protocol):
    """Images on this host, content-addressed under ``<data-dir>/images``."""

    async def pull(self, ref: str, *, auth: Mapping[str, RegistryAuth] | None = None,
                   progress: Progress | None = None) -> Image:
        """Fetch what is missing; :class:`~kubevisor.runtime.errors.ImagePullError`
        with a kubelet-like message when it cannot."""
    def get(self, ref: str) -> Image | None:
        """The local image for ``ref`` (by tag or digest), without network."""
    async def import_archive(self, path: str, *, progress: Progress | None = None) -> list[Image]:
        """Load an OCI image layout tar (``skopeo copy ... oci-archive:``)."""
    async def prepare_rootfs(self, image: Image, dest: str) -> str:
        """A writable root filesystem for one container at ``dest``
        (overlay of the shared layers when the kernel allows); returns its path."""
    async def release_rootfs(self, dest: str) -> None: ...


# ------------------------------------------------------------------ network


@dataclass(frozen=True, slots=True)
class PodNetworkInfo:
    netns: str  # path of the network namespace
    ip: str
    gateway: str
    prefix_len: int


@dataclass(frozen=True, slots=True)
class ServiceBackend:
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """One service port as the proxy programs it."""

    name: str  # "<namespace>/<service>:<port name or number>"
    protocol: Literal["TCP", "UDP"]
    cluster_ip: str
    port: int
    backends: Sequence[ServiceBackend]
    node_port: int | None = None
    external_ips: Sequence[str] = ()  # LoadBalancer ingress IPs, announced on this host


class PodNetwork(Protocol):
    """The node bridge and one network namespace per pod."""

    async def setup_pod(self, pod_id: str) -> PodNetworkInfo:
        """Create (or find, after an agent restart) the pod's namespace, veth
        and address. Idempotent for the same ``pod_id``."""
    async def teardown_pod(self, pod_id: str) -> None: ...
    async def list_pods(self) -> dict[str, PodNetworkInfo]: ...


class ServiceProxy(Protocol):
    async def sync(self, rules: Sequence[ServiceRule]) -> None:
        """Make the host's rules exactly ``rules`` (one atomic replacement)."""
