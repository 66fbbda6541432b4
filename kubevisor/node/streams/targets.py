"""Which container (and which log file, which network namespace) a stream
request names, decided as kubelet decides it.

A request names ``namespace/pod/container``. The pod's containers are found
by their labels in ``ContainerRuntime.list()`` (see
:mod:`kubevisor.node.containers`); each attempt's log is
``<pods_dir>/<pod uid>/logs/<container>/<attempt>.log``. When the agent
hands in a ``pod_lookup`` (its cached Pod, status included), the log
request follows kubelet's ``validateContainerLogStatus`` over the pod's
container statuses (current, previous, waiting reasons); without one the
runtime's view alone decides (the latest attempt is current, the one before
it previous). Called by :mod:`kubevisor.node.streams.server`; raises
:class:`~kubevisor.node.streams.errors.StreamError` with kube's wording.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevisor.node import containers as labels
from kubevisor.node.streams.errors import StreamError, bad_request, not_found
from kubevisor.runtime.types import ContainerRuntime, ContainerState, PodNetwork

JSON = dict[str, Any]
#: The agent's view of a pod: (namespace, name) → the Pod object, or None.
PodLookup = Callable[[str, str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class LogTarget:
    """The log file to read and the container writing it."""

    path: str
    container_id: str
    pod_uid: str
    name: str
    attempt: int


def log_path(pods_dir: str | Path, pod_uid: str, name: str, attempt: int) -> str:
    return str(Path(pods_dir) / pod_uid / "logs" / name / f"{attempt}.log")


def attempt_of_id(container_id: str) -> int | None:
    """The attempt a container id was made for (its ``-N`` suffix, see
    :func:`kubevisor.node.containers.container_id`)."""
    _, _, tail = container_id.rpartition("-")
    return int(tail) if tail.isdigit() else None


def _of_pod(states: Sequence[ContainerState], namespace: str, pod: str) -> dict[str, list[ContainerState]]:
    """This pod's containers by uid, each list oldest attempt first."""
    out: dict[str, list[ContainerState]] = {}
    for state in states:
        ident = labels.identity(state)
        if ident is None or ident.namespace != namespace or ident.pod_name != pod:
            continue
        out.setdefault(ident.pod_uid, []).append(state)
    for items in out.values():
        items.sort(key=labels.attempt_of)
    return out


def _pick_uid(by_uid: Mapping[str, Sequence[ContainerState]], wanted: str | None) -> str | None:
    if wanted:
        return wanted if wanted in by_uid else None
    if not by_uid:
        return None
    return max(by_uid, key=lambda uid: max((s.started_at or 0.0) for s in by_uid[uid]))


class Targets:
    """Resolves stream requests against the runtime, the pod network and
    (when given) the agent's pods."""

    def __init__(self, runtime: ContainerRuntime, network: PodNetwork | None, pods_dir: str | Path,
                 *, pod_lookup: PodLookup | None = None) -> None:
        self.runtime = runtime
        self.network = network
        self.pods_dir = str(pods_dir)
        self.pod_lookup = pod_lookup

    def _pod(self, namespace: str, pod: str) -> Mapping[str, Any] | None:
        return self.pod_lookup(namespace, pod) if self.pod_lookup is not None else None

    async def attempts(self, namespace: str, pod: str, name: str) -> tuple[str, list[ContainerState]]:
        """(pod uid, the container's attempts oldest first) or 404."""
        known = self._pod(namespace, pod)
        if self.pod_lookup is not None and known is None:
            raise not_found("pod does not exist")
        wanted = ((known or {}).get("metadata") or {}).get("uid")
        by_uid = _of_pod(await self.runtime.list(), namespace, pod)
        uid = _pick_uid(by_uid, wanted)
        if uid is None:
            return wanted or "", []
        return uid, [s for s in by_uid[uid] if labels.identity(s).name == name]  # type: ignore[union-attr]

    # -------------------------------------------------------------- exec

    async def running(self, namespace: str, pod: str, name: str) -> ContainerState:
        """The running container exec and attach reach, or kube's refusal."""
        _, attempts = await self.attempts(namespace, pod, name)
        if not attempts:
            raise not_found(f'container not found ("{name}")')
        current = attempts[-1]
        if current.status != "running":
            raise bad_request(f'container "{name}" in pod "{pod}" is not running')
        return current

    # -------------------------------------------------------------- logs

    async def log(self, namespace: str, pod: str, name: str, *, previous: bool) -> LogTarget:
        uid, attempts = await self.attempts(namespace, pod, name)
        known = self._pod(namespace, pod)
        if known is not None:
            container_id = _from_status(known, pod, name, previous=previous)
            attempt = attempt_of_id(container_id)
            if attempt is None:
                raise StreamError(500, f"container {container_id} has no attempt number")
            uid = uid or str((known.get("metadata") or {}).get("uid") or "")
            return LogTarget(log_path(self.pods_dir, uid, name, attempt), container_id, uid,
                             name, attempt)
        if not attempts:
            raise bad_request(f'container "{name}" in pod "{pod}" is waiting to start: '
                              "ContainerCreating")
        if previous:
            if len(attempts) < 2:
                raise bad_request(f'previous terminated container "{name}" in pod "{pod}" not found')
            chosen = attempts[-2]
        else:
            chosen = attempts[-1]
        attempt = labels.attempt_of(chosen)
        return LogTarget(log_path(self.pods_dir, uid, name, attempt), chosen.id, uid, name, attempt)

    async def is_running(self, container_id: str) -> bool:
        state = await self.runtime.state(container_id)
        return state is not None and state.status == "running"

    def newer_attempt(self, target: LogTarget) -> bool:
        """Whether a later attempt of the container has started writing."""
        directory = Path(self.pods_dir) / target.pod_uid / "logs" / target.name
        try:
            names = [p.stem for p in directory.iterdir()]
        except OSError:
            return False
        return any(n.isdigit() and int(n) > target.attempt for n in names)

    # ------------------------------------------------------- port-forward

    async def pod_network(self, namespace: str, pod: str) -> tuple[str, str, str]:
        """(pod uid, network namespace path, pod IP) for port-forward."""
        known = self._pod(namespace, pod)
        if self.pod_lookup is not None and known is None:
            raise not_found("pod does not exist")
        uid = ((known or {}).get("metadata") or {}).get("uid")
        if not uid:
            uid = _pick_uid(_of_pod(await self.runtime.list(), namespace, pod), None)
        if not uid:
            raise not_found("pod does not exist")
        networks = await self.network.list_pods() if self.network is not None else {}
        info = networks.get(uid)
        if info is None:
            raise bad_request(f'pod "{pod}" has no network namespace on this node')
        return uid, info.netns, info.ip


def _from_status(pod: Mapping[str, Any], pod_name: str, name: str, *, previous: bool) -> str:
    """kubelet's choice of container for a log request, from the pod's
    status; the container id without its ``runtime://`` prefix."""
    status = pod.get("status") or {}
    found: JSON | None = None
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for item in status.get(key) or []:
            if item.get("name") == name:
                found = item
                break
        if found is not None:
            break
    if found is None:
        raise bad_request(f'container "{name}" in pod "{pod_name}" is waiting to start: '
                          "ContainerCreating")
    state = found.get("state") or {}
    last = (found.get("lastState") or {}).get("terminated") or {}
    waiting, running, terminated = state.get("waiting"), state.get("running"), state.get("terminated")
    current = str(found.get("containerID") or "")
    chosen = ""
    if previous:
        if not last.get("containerID"):
            raise bad_request(f'previous terminated container "{name}" in pod "{pod_name}" not found')
        chosen = last["containerID"]
    elif running is not None:
        chosen = current
    elif terminated is not None:
        chosen = str(terminated.get("containerID") or current or last.get("containerID") or "")
        if not chosen:
            raise bad_request(f'container "{name}" in pod "{pod_name}" is terminated')
    elif last:
        if not last.get("containerID"):
            raise bad_request(f'container "{name}" in pod "{pod_name}" is terminated')
        chosen = last["containerID"]
    elif waiting is not None:
        reason = waiting.get("reason") or ""
        detail = {"ErrImagePull": "image can't be pulled",
                  "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise bad_request(f'container "{name}" in pod "{pod_name}" is waiting to start: {detail}')
    else:
        raise bad_request(f'container "{name}" in pod "{pod_name}" is waiting to start - no logs yet')
    return chosen.split("://", 1)[-1]
