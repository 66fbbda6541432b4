"""What a workload controller needs to know about its pods, pure.

Readiness and availability as kube-controller-manager judges them
(``podutil.IsPodReady``, ``IsPodAvailable``), whether a pod is still
active, which pods a workload controls, and the informer handler that maps
a pod event to its controller's work-queue key. Called by the StatefulSet,
DaemonSet and Job controllers (statefulset.py, daemonset.py, job.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from kubevisor.api.meta import controller_of, parse_rfc3339
from kubevisor.api.selectors import label_selector_from_spec

JSON = dict[str, Any]
Key = tuple[str, str]


def phase(pod: JSON) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_terminating(pod: JSON) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_finished(pod: JSON) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_active(pod: JSON) -> bool:
    """Neither finished nor being deleted (kube's ``controller.IsPodActive``)."""
    return not is_finished(pod) and not is_terminating(pod)


def ready_condition(pod: JSON) -> JSON | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond  # type: ignore[no-any-return]
    return None


def is_ready(pod: JSON) -> bool:
    cond = ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def is_running_and_ready(pod: JSON) -> bool:
    return phase(pod) == "Running" and is_ready(pod)


def is_available(pod: JSON, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least ``min_ready_seconds`` (by the Ready condition's
    lastTransitionTime)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
    return since is not None and since + timedelta(seconds=min_ready_seconds) <= now


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def controlled_by(pods: Iterable[JSON], owner_uid: str) -> list[JSON]:
    """The pods whose controller reference points at ``owner_uid``."""
    out = []
    for pod in pods:
        ref = controller_of(pod)
        if ref is not None and ref.get("uid") == owner_uid:
            out.append(pod)
    return out


def selector_string(selector: JSON | None) -> str:
    """A LabelSelector object as the string a list request takes."""
    return str(label_selector_from_spec(selector or {}))


def enqueue_controller(kind: str, add: Callable[[Key], None]) -> Callable[
        [str, JSON, JSON | None], None]:
    """An informer handler: a pod event enqueues ``(namespace, name)`` of its
    controller when that is a ``kind`` (and its previous controller too)."""
    def handler(etype: str, obj: JSON, old: JSON | None) -> None:
        for pod in (obj, old):
            if pod is None:
                continue
            ref = controller_of(pod)
            if ref is not None and ref.get("kind") == kind:
                add(((pod.get("metadata") or {}).get("namespace") or "", ref.get("name", "")))
    return handler


def enqueue_self(add: Callable[[Key], None]) -> Callable[[str, JSON, JSON | None], None]:
    """An informer handler enqueuing the object's own ``(namespace, name)``."""
    def handler(etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj.get("metadata") or {}
        add((md.get("namespace") or "", md.get("name") or ""))
    return handler
