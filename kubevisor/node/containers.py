"""How a pod's containers are named and labelled on the host, and what the
runtime reports about them, grouped per container.

The id of a container is derived from pod uid, container name and attempt
(the restartCount it runs as), and its labels carry the same plus pod
namespace/name, so an agent that restarts finds every container again by
``ContainerRuntime.list()`` alone. :func:`observe` groups those states by
container name, newest attempt last. Used by :mod:`kubevisor.node.plan`,
:mod:`kubevisor.node.podstatus` and the pod worker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kubevisor.runtime.types import ContainerState

POD_UID = "io.kubernetes.pod.uid"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_NAME = "io.kubernetes.pod.name"
CONTAINER_NAME = "io.kubernetes.container.name"
ATTEMPT = "io.kubernetes.container.restartCount"
INIT = "kubevisor.io/init"
CRASHES = "kubevisor.io/crashes"
IMAGE = "kubevisor.io/image"
IMAGE_ID = "kubevisor.io/image-id"


def container_id(pod_uid: str, name: str, attempt: int) -> str:
    """Unique on the host, stable across agent restarts, and short enough for
    runc (a hash keeps long container names within limits)."""
    digest = hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()[:12]
    return f"k{pod_uid.replace('-', '')[:16]}-{digest}-{attempt}"


@dataclass(frozen=True, slots=True)
class Identity:
    pod_uid: str
    namespace: str
    pod_name: str
    name: str
    attempt: int
    init: bool = False
    crashes: int = 0
    image: str = ""
    image_id: str = ""

    @property
    def id(self) -> str:
        return container_id(self.pod_uid, self.name, self.attempt)

    def labels(self) -> dict[str, str]:
        return {POD_UID: self.pod_uid, POD_NAMESPACE: self.namespace, POD_NAME: self.pod_name,
                CONTAINER_NAME: self.name, ATTEMPT: str(self.attempt),
                INIT: "true" if self.init else "false", CRASHES: str(self.crashes),
                IMAGE: self.image, IMAGE_ID: self.image_id}


def identity(state: ContainerState) -> Identity | None:
    """The identity a container was labelled with (None: not one of ours)."""
    lb = state.labels
    if POD_UID not in lb or CONTAINER_NAME not in lb:
        return None
    try:
        attempt = int(lb.get(ATTEMPT, "0"))
        crashes = int(lb.get(CRASHES, "0"))
    except ValueError:
        return None
    return Identity(pod_uid=lb[POD_UID], namespace=lb.get(POD_NAMESPACE, ""),
                    pod_name=lb.get(POD_NAME, ""), name=lb[CONTAINER_NAME], attempt=attempt,
                    init=lb.get(INIT) == "true", crashes=crashes, image=lb.get(IMAGE, ""),
                    image_id=lb.get(IMAGE_ID, ""))


def attempt_of(state: ContainerState) -> int:
    ident = identity(state)
    return ident.attempt if ident else -1


Observed = Mapping[str, Sequence[ContainerState]]


def observe(states: Iterable[ContainerState], pod_uid: str) -> dict[str, list[ContainerState]]:
    """This pod's containers by container name, oldest attempt first."""
    out: dict[str, list[ContainerState]] = {}
    for state in states:
        ident = identity(state)
        if ident is None or ident.pod_uid != pod_uid:
            continue
        out.setdefault(ident.name, []).append(state)
    for items in out.values():
        items.sort(key=attempt_of)
    return out


def by_pod(states: Iterable[ContainerState]) -> dict[str, list[ContainerState]]:
    """Every labelled container by pod uid."""
    out: dict[str, list[ContainerState]] = {}
    for state in states:
        ident = identity(state)
        if ident is not None:
            out.setdefault(ident.pod_uid, []).append(state)
    return out


def latest(observed: Observed, name: str) -> ContainerState | None:
    items = observed.get(name) or ()
    return items[-1] if items else None


def previous(observed: Observed, name: str) -> ContainerState | None:
    items = observed.get(name) or ()
    return items[-2] if len(items) > 1 else None
