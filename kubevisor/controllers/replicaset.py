"""The ReplicaSet controller (kube-controller-manager's replicaset controller).

Keeps ``spec.replicas`` active pods that match a ReplicaSet's selector and
are controlled by it: adopts matching orphans, releases pods that stopped
matching, creates missing pods from the template (``generateName:
<rs>-``) in slow-start batches of 1, 2, 4, ... (a failing batch stops the
rest, so a quota refusal costs one request, not a hundred), and deletes
surplus pods, unscheduled before scheduled, pending before running,
not-ready before ready, recently ready before long ready, newest first.
:class:`~kubevisor.controllers.expectations.Expectations` keep a burst of
creates or deletes from being repeated before the pod watch shows them.
Status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
with minReadySeconds, observedGeneration, a ReplicaFailure condition
while creates or deletes fail) is written through the status subresource
only when it changed. Pure parts: :func:`plan`, :func:`pods_to_delete`,
:func:`calculate_status`; the shell: :class:`ReplicaSetController`,
started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubevisor.api.meta import controller_of
from kubevisor.api.selectors import LabelSelector, SelectorError, label_selector_from_spec
from kubevisor.client import (
    ApiError,
    Client,
    ClientError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    SharedInformers,
)
from kubevisor.controllers import ownership
from kubevisor.controllers.conditions import find_condition, set_condition
from kubevisor.controllers.errors import PermanentError, TemporaryError
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.expectations import Expectations
from kubevisor.controllers.podstate import is_active, is_available, is_ready, parse_time
from kubevisor.controllers.podtemplate import pod_from_template
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
#: kube's BurstReplicas: at most this many creates or deletes per sync.
BURST = 500
REPLICA_FAILURE = "ReplicaFailure"
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}

log = logging.getLogger(__name__)


# -- pure -------------------------------------------------------------------


def replicas_of(obj: JSON) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


@dataclass(frozen=True, slots=True)
class Plan:
    create: int = 0
    delete: tuple[JSON, ...] = ()


def plan(rs: JSON, pods: list[JSON], *, burst: int = BURST) -> Plan:
    """What to do about ``pods`` (active, controlled by ``rs``)."""
    diff = len(pods) - replicas_of(rs)
    if diff < 0:
        return Plan(create=min(-diff, burst))
    if diff > 0:
        return Plan(delete=tuple(pods_to_delete(pods, min(diff, burst))))
    return Plan()


def _epoch(value: Any) -> float:
    moment = parse_time(value)
    return moment.timestamp() if moment is not None else 0.0


def _deletion_rank(pod: JSON) -> tuple[Any, ...]:
    """Sort key: the pod to delete first sorts first."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    ready = is_ready(pod)
    ready_since = 0.0
    if ready:
        for cond in status.get("conditions") or ():
            if cond.get("type") == "Ready":
                ready_since = _epoch(cond.get("lastTransitionTime"))
    restarts = max((int(c.get("restartCount") or 0)
                    for c in status.get("containerStatuses") or ()), default=0)
    created = _epoch((pod.get("metadata") or {}).get("creationTimestamp"))
    return (1 if spec.get("nodeName") else 0,
            _PHASE_RANK.get(str(status.get("phase") or "Pending"), 0),
            1 if ready else 0,
            -ready_since,  # ready more recently first
            -restarts,  # more restarts first
            -created,  # newest first
            (pod.get("metadata") or {}).get("name") or "")


def pods_to_delete(pods: list[JSON], count: int) -> list[JSON]:
    return sorted(pods, key=_deletion_rank)[:max(count, 0)]


def _labels_match(required: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    have = labels or {}
    return all(have.get(k) == v for k, v in (required or {}).items())


def calculate_status(rs: JSON, pods: list[JSON], *, now: datetime,
                     error: str | None = None) -> JSON:
    """The status ``rs`` should have given its controlled active ``pods``."""
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    status = copy.deepcopy(rs.get("status") or {})
    fully = ready = available = 0
    for pod in pods:
        if _labels_match(template_labels, (pod.get("metadata") or {}).get("labels")):
            fully += 1
        if is_ready(pod):
            ready += 1
            if is_available(pod, min_ready, now):
                available += 1
    conditions = status.get("conditions") or []
    failure = find_condition(conditions, REPLICA_FAILURE)
    if error is not None and failure is None:
        reason = "FailedCreate" if len(pods) < replicas_of(rs) else "FailedDelete"
        conditions, _ = set_condition(conditions, type=REPLICA_FAILURE, status="True",
                                      reason=reason, message=error, now=rfc3339(now))
    elif error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != REPLICA_FAILURE]
    if conditions:
        status["conditions"] = conditions
    else:
        status.pop("conditions", None)
    status["replicas"] = len(pods)
    for field, value in (("fullyLabeledReplicas", fully), ("readyReplicas", ready),
                         ("availableReplicas", available)):
        if value:
            status[field] = value
        else:
            status.pop(field, None)  # omitempty, as kube writes them
    status["observedGeneration"] = int((rs.get("metadata") or {}).get("generation") or 0)
    return status


def next_availability(rs: JSON, pods: list[JSON], now: datetime) -> float | None:
    """Seconds until the next ready pod turns available (minReadySeconds)."""
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    if min_ready <= 0:
        return None
    waits = []
    for pod in pods:
        if is_ready(pod) and not is_available(pod, min_ready, now):
            for cond in (pod.get("status") or {}).get("conditions") or ():
                since = parse_time(cond.get("lastTransitionTime"))
                if cond.get("type") == "Ready" and since is not None:
                    waits.append((since - now).total_seconds() + min_ready)
    return max(min(waits), 0.0) + 0.05 if waits else None


async def slow_start_batch(count: int, call: Callable[[], Awaitable[None]], *,
                           initial: int = 1) -> tuple[int, BaseException | None]:
    """Run ``call`` ``count`` times in batches of 1, 2, 4, ...; stop after the
    first batch with a failure. Returns (successes, first error)."""
    done = 0
    batch = min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(call() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for err in errors:
            if isinstance(err, asyncio.CancelledError):
                raise err
        done += batch - len(errors)
        if errors:
            return done, errors[0]
        batch = min(2 * batch, count - done)
    return done, None


def _namespace_terminating(exc: BaseException) -> bool:
    if not isinstance(exc, ForbiddenError):
        return False
    causes = exc.details.get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes) or \
        "because it is being terminated" in exc.message


# -- the shell --------------------------------------------------------------


class ReplicaSetController:
    """Watches ReplicaSets and Pods; keeps each ReplicaSet's pod count."""

    def __init__(self, client: Client, *, workers: int = 4, burst: int = BURST,
                 backoff: Backoff = DEFAULT_BACKOFF,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._burst = burst
        self._clock = clock
        self.expectations = Expectations()
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.replicasets = self.informers.get("apps/v1", "ReplicaSet")
        self.pods = self.informers.get("v1", "Pod")
        self._pods_by_ns: dict[str, dict[str, JSON]] = {}
        self.replicasets.add_handler(self._on_replicaset)
        self.pods.add_handler(self._on_pod)
        self.events = EventRecorder(client, "replicaset-controller")
        self.controller: Controller[Key] = Controller(
            "replicaset", self.reconcile, workers=workers, backoff=backoff)

    # -- events

    def _on_replicaset(self, etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj.get("metadata") or {}
        key = (md.get("namespace") or "", md.get("name") or "")
        if etype == "DELETED":
            self.expectations.forget(key)
        self.controller.queue.add(key)

    def _rs_key(self, pod: JSON) -> Key | None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        ns = (pod.get("metadata") or {}).get("namespace") or ""
        rs = self.replicasets.get(ref.get("name", ""), ns)
        if rs is None or (rs.get("metadata") or {}).get("uid") != ref.get("uid"):
            return None
        return (ns, ref["name"])

    def _matching_replicasets(self, pod: JSON) -> list[Key]:
        md = pod.get("metadata") or {}
        ns = md.get("namespace") or ""
        out = []
        for rs in self.replicasets.items():
            rmd = rs.get("metadata") or {}
            if rmd.get("namespace") != ns:
                continue
            try:
                selector = label_selector_from_spec((rs.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if not selector.empty and selector.matches(md.get("labels") or {}):
                out.append((ns, rmd.get("name") or ""))
        return out

    def _on_pod(self, etype: str, pod: JSON, old: JSON | None) -> None:
        md = pod.get("metadata") or {}
        ns, name, uid = md.get("namespace") or "", md.get("name") or "", md.get("uid") or ""
        add = self.controller.queue.add
        if etype == "DELETED":
            self._pods_by_ns.get(ns, {}).pop(name, None)
        else:
            self._pods_by_ns.setdefault(ns, {})[name] = pod
        key = self._rs_key(pod)
        deleting = etype == "DELETED" or bool(md.get("deletionTimestamp"))
        if key is not None:
            if deleting:
                self.expectations.deletion_observed(key, uid)
            elif etype == "ADDED":
                self.expectations.creation_observed(key)
            add(key)
        elif etype != "DELETED" and not deleting:
            for rs_key in self._matching_replicasets(pod):
                add(rs_key)
        if old is not None and etype == "MODIFIED":
            old_key = self._rs_key(old)
            if old_key is not None and old_key != key:
                add(old_key)
            old_labels = (old.get("metadata") or {}).get("labels")
            if key is None and old_labels != md.get("labels"):
                for rs_key in self._matching_replicasets(old):
                    add(rs_key)

    # -- run and reconcile

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="replicaset-informers")
            group.create_task(self.events.run(), name="replicaset-events")
            await self.informers.wait_synced(self.pods, self.replicasets)
            group.create_task(self.controller.run(), name="replicaset-controller")

    async def reconcile(self, key: Key) -> Result | None:
        ns, name = key
        rs = self.replicasets.get(name, ns)
        if rs is None:
            self.expectations.forget(key)
            return None
        try:
            selector = label_selector_from_spec((rs.get("spec") or {}).get("selector"))
        except SelectorError as exc:
            raise PermanentError(f"replicaset {ns}/{name}: bad selector: {exc}") from exc
        need_sync = self.expectations.satisfied(key)
        active = [p for p in self._pods_by_ns.get(ns, {}).values() if is_active(p)]
        pods = await self._claim(rs, selector, active)
        error: ClientError | None = None
        if need_sync and not rs["metadata"].get("deletionTimestamp"):
            try:
                await self._manage(key, rs, pods)
            except ClientError as exc:
                error = exc
        now = self._clock()
        status = calculate_status(rs, pods, now=now,
                                  error=str(error) if error is not None else None)
        if status != (rs.get("status") or {}):
            body = copy.deepcopy(rs)
            body["status"] = status
            try:
                await self.client.update_status(body)
            except NotFoundError:
                return None
            except ConflictError as exc:
                raise TemporaryError(f"replicaset {ns}/{name} changed meanwhile") from exc
        if error is not None:
            raise TemporaryError(f"replicaset {ns}/{name}: {error}")
        wait = next_availability(rs, pods, now)
        return Result(requeue_after=wait) if wait is not None else None

    async def _claim(self, rs: JSON, selector: LabelSelector, active: list[JSON]) -> list[JSON]:
        c = ownership.claim(rs, selector, active)
        pods = list(c.owned)
        if c.adopt and await self._still_there(rs):
            for pod in c.adopt:
                adopted = await ownership.adopt(self.client, rs, pod)
                if adopted is not None:
                    pods.append(adopted)
        for pod in c.release:
            await ownership.release(self.client, rs, pod)
        return pods

    async def _still_there(self, rs: JSON) -> bool:
        """kube's canAdopt: a fresh read shows the same, undeleted ReplicaSet."""
        md = rs["metadata"]
        try:
            fresh = await self.client.get("apps/v1", "ReplicaSet", md["name"],
                                          namespace=md["namespace"])
        except NotFoundError:
            return False
        fmd = fresh.get("metadata") or {}
        return fmd.get("uid") == md["uid"] and not fmd.get("deletionTimestamp")

    async def _manage(self, key: Key, rs: JSON, pods: list[JSON]) -> None:
        todo = plan(rs, pods, burst=self._burst)
        if todo.create:
            await self._create(key, rs, todo.create)
        elif todo.delete:
            await self._delete(key, rs, list(todo.delete))

    async def _create(self, key: Key, rs: JSON, count: int) -> None:
        template = (rs.get("spec") or {}).get("template") or {}
        body = pod_from_template(rs, template)

        async def one() -> None:
            try:
                pod = await self.client.create(copy.deepcopy(body))
            except ApiError as exc:
                if _namespace_terminating(exc):
                    return
                self.events.record(reference(rs), "Warning", "FailedCreate",
                                   f"Error creating: {exc}")
                raise
            self.events.record(reference(rs), "Normal", "SuccessfulCreate",
                               f"Created pod: {pod['metadata']['name']}")

        self.expectations.expect(key, adds=count)
        done, error = await slow_start_batch(count, one)
        for _ in range(count - done):
            self.expectations.creation_observed(key)
        if error is not None:
            log.info("replicaset %s/%s: creating pods failed: %s", *key, error)
            if isinstance(error, ClientError):
                raise error
            raise TemporaryError(f"creating pods: {error!r}") from error

    async def _delete(self, key: Key, rs: JSON, victims: list[JSON]) -> None:
        self.expectations.expect(key, deletes=[p["metadata"]["uid"] for p in victims])

        async def one(pod: JSON) -> None:
            md = pod["metadata"]
            try:
                await self.client.delete("v1", "Pod", md["name"], namespace=md["namespace"],
                                         preconditions={"uid": md["uid"]})
            except ClientError as exc:
                self.expectations.deletion_observed(key, md["uid"])
                if not isinstance(exc, NotFoundError | ConflictError):
                    self.events.record(reference(rs), "Warning", "FailedDelete",
                                       f"Error deleting: {exc}")
                    raise
                return
            self.events.record(reference(rs), "Normal", "SuccessfulDelete",
                               f"Deleted pod: {md['name']}")

        results = await asyncio.gather(*(one(p) for p in victims), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, ClientError):
                    raise result
                raise TemporaryError(f"deleting pods: {result!r}") from result


__all__ = [
    "BURST",
    "Plan",
    "ReplicaSetController",
    "calculate_status",
    "plan",
    "pods_to_delete",
    "replicas_of",
    "slow_start_batch",
]
