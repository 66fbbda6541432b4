"""The Job controller (kube-controller-manager's job and ttl-after-finished
controllers), batch/v1.

A Job runs pods until ``completions`` of them succeed, at most
``parallelism`` at a time. ``completionMode: Indexed`` gives each pod an
index 0..completions-1 (annotation and label
``batch.kubernetes.io/job-completion-index``, env ``JOB_COMPLETION_INDEX``,
hostname ``<job>-<index>``) and succeeds when every index has. Failed pods
count against ``backoffLimit`` (with ``restartPolicy: OnFailure``, container
restarts too) and are replaced after an exponential back-off (10 s
doubling, capped at 6 min, as kube); past the limit, or past
``activeDeadlineSeconds``, the Job fails: ``FailureTarget`` then, once its
pods are gone, ``Failed`` (reasons BackoffLimitExceeded, DeadlineExceeded).
Success sets ``SuccessCriteriaMet`` then ``Complete`` and completionTime,
so ``kubectl wait --for=condition=complete`` works. A
``podFailurePolicy`` rule matching a failed pod's exit codes or
conditions may fail the Job at once (reason PodFailurePolicy), ignore the
failure (not counted, the pod is replaced) or count it. ``suspend`` deletes
the active pods (condition Suspended); ``ttlSecondsAfterFinished`` deletes
the finished Job. Pods carry ``batch.kubernetes.io/job-name``,
``batch.kubernetes.io/controller-uid`` (and the legacy ``job-name``,
``controller-uid``).

Counting follows the pods that exist (no job-tracking finalizer yet):
``failed`` never decreases, ``succeeded`` counts Succeeded pods, which the
controller never deletes while the Job runs.

Pure: :func:`plan` (with :func:`build_pod`); the shell: :class:`JobController`,
started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubevisor.api.meta import owner_reference
from kubevisor.client import (
    Client,
    ConflictError,
    NotFoundError,
    SharedInformers,
    filtered,
    has_label,
    metadata_only,
)
from kubevisor.controllers import podstate
from kubevisor.controllers.conditions import find_condition, set_condition
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.podclaims import controlled_pods
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
#: kube's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 360.0

BACKOFF_LIMIT = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS = ("CompletionsReached", "Reached expected number of succeeded pods")


@dataclass(frozen=True, slots=True)
class CreatePod:
    pod: JSON


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class DeleteJob:
    uid: str


Action = CreatePod | DeletePod | DeleteJob


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: JSON = field(default_factory=dict)
    requeue_after: float | None = None


# -- builders ---------------------------------------------------------------


def build_pod(job: JSON, index: int | None = None) -> JSON:
    """A pod of ``job`` (for completion ``index`` in Indexed mode)."""
    md, spec = job["metadata"], job.get("spec") or {}
    name, uid = md["name"], md["uid"]
    tpl = copy.deepcopy(spec.get("template") or {})
    tmd = tpl.get("metadata") or {}
    pod_spec: JSON = tpl.get("spec") or {}
    labels = {**(tmd.get("labels") or {}), **dict.fromkeys(JOB_NAME_LABELS, name),
              **dict.fromkeys(UID_LABELS, uid)}
    annotations = dict(tmd.get("annotations") or {})
    pod_md: JSON = {"generateName": f"{name}-", "namespace": md["namespace"],
                    "labels": labels, "ownerReferences": [owner_reference(job)]}
    if index is not None:
        pod_md["generateName"] = f"{name}-{index}-"
        labels[INDEX_KEY] = annotations[INDEX_KEY] = str(index)
        pod_spec.setdefault("hostname", f"{name}-{index}")
        env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}}
        for kind in ("initContainers", "containers"):
            for container in pod_spec.get(kind) or ():
                container["env"] = [e for e in container.get("env") or ()
                                    if e.get("name") != "JOB_COMPLETION_INDEX"] + [dict(env)]
    if annotations:
        pod_md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": pod_spec}


# -- the plan ---------------------------------------------------------------


def pod_index(pod: JSON) -> int | None:
    md = pod.get("metadata") or {}
    value = (md.get("annotations") or {}).get(INDEX_KEY) or (md.get("labels") or {}).get(INDEX_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def format_indexes(indexes: Iterable[int]) -> str:
    """``0-2,4``: kube's compressed completedIndexes."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def failure_time(pod: JSON) -> datetime | None:
    """When a failed pod failed: its last container's finishedAt, else the
    Ready condition's transition, else its creation."""
    status = pod.get("status") or {}
    times = [podstate.parse_time(((c.get("state") or {}).get("terminated") or {})
                                 .get("finishedAt"))
             for c in status.get("containerStatuses") or ()]
    known = [t for t in times if t is not None]
    if known:
        return max(known)
    cond = podstate.ready_condition(pod)
    return podstate.parse_time((cond or {}).get("lastTransitionTime")) or podstate.parse_time(
        (pod.get("metadata") or {}).get("creationTimestamp"))


def failure_rule(policy: JSON, pod: JSON) -> tuple[str, str] | None:
    """(action, message) of the first ``podFailurePolicy`` rule a failed pod
    matches (exit codes of its containers other than 0, or its conditions)."""
    md, status = pod.get("metadata") or {}, pod.get("status") or {}
    where = f"{md.get('namespace', '')}/{md.get('name', '')}"
    statuses = [*(status.get("initContainerStatuses") or ()),
                *(status.get("containerStatuses") or ())]
    for i, rule in enumerate(policy.get("rules") or ()):
        action = str(rule.get("action") or "")
        codes = rule.get("onExitCodes")
        if codes:
            values = {int(v) for v in codes.get("values") or ()}
            for cs in statuses:
                if codes.get("containerName") and cs.get("name") != codes["containerName"]:
                    continue
                term = (cs.get("state") or {}).get("terminated") or {}
                code = term.get("exitCode")
                if not code:
                    continue
                if (codes.get("operator") == "In") == (int(code) in values):
                    return action, (f"Container {cs.get('name')} for pod {where} failed with "
                                    f"exit code {code} matching {action} rule at index {i}")
        for pattern in rule.get("onPodConditions") or ():
            for cond in status.get("conditions") or ():
                if cond.get("type") == pattern.get("type") and \
                        cond.get("status") == pattern.get("status", "True"):
                    return action, (f"Pod {where} has condition {cond.get('type')} matching "
                                    f"{action} rule at index {i}")
    return None


def is_finished(job: JSON) -> bool:
    for type_ in ("Complete", "Failed"):
        cond = find_condition((job.get("status") or {}).get("conditions"), type_)
        if cond is not None and cond.get("status") == "True":
            return True
    return False


def _age_order(pod: JSON) -> tuple[int, int, str]:
    """Which active pods go first when there are too many: not yet running,
    then not ready, then the newest."""
    md = pod.get("metadata") or {}
    return (0 if podstate.phase(pod) == "Pending" else 1, 1 if podstate.is_ready(pod) else 0,
            "".join(chr(0x10FFFF - ord(ch)) for ch in str(md.get("creationTimestamp") or "")))


def plan(job: JSON, pods: Iterable[JSON], *, now: datetime,
         backoff_base: float = POD_FAILURE_BACKOFF,
         backoff_cap: float = MAX_POD_FAILURE_BACKOFF) -> Plan:
    """What ``job`` needs next, given the pods it controls."""
    md, spec = job["metadata"], job.get("spec") or {}
    old = job.get("status") or {}
    status: JSON = copy.deepcopy(old)
    out = Plan(status=status)
    acts = out.actions
    stamp = rfc3339(now)
    pods = list(pods)
    active = [p for p in pods if podstate.is_active(p)]
    succeeded = [p for p in pods if podstate.phase(p) == "Succeeded"]
    failed = [p for p in pods if podstate.phase(p) == "Failed"]
    policy_failure: str | None = None
    if spec.get("podFailurePolicy"):
        counted = []
        for p in failed:
            matched = failure_rule(spec["podFailurePolicy"], p)
            if matched is not None and matched[0] == "Ignore":
                continue  # not counted, replaced
            if matched is not None and matched[0] == "FailJob" and policy_failure is None:
                policy_failure = matched[1]
            counted.append(p)
        failed = counted
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    parallelism = int(spec.get("parallelism", 1) or 0)

    def set_cond(type_: str, state: str, reason: str, message: str) -> None:
        status["conditions"], _ = set_condition(status.get("conditions"), type=type_,
                                                status=state, reason=reason,
                                                message=message, now=stamp)

    def delete_all(candidates: Iterable[JSON]) -> int:
        n = 0
        for pod in candidates:
            acts.append(DeletePod(pod["metadata"]["name"], pod["metadata"]["uid"]))
            n += 1
        return n

    if is_finished(job):
        delete_all(active)
        ttl = spec.get("ttlSecondsAfterFinished")
        if ttl is not None and not md.get("deletionTimestamp"):
            done = podstate.parse_time(old.get("completionTime")) or max(
                (t for c in old.get("conditions") or ()
                 if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                 and (t := podstate.parse_time(c.get("lastTransitionTime"))) is not None),
                default=now)
            left = (done + timedelta(seconds=int(ttl)) - now).total_seconds()
            if left <= 0:
                acts.append(DeleteJob(md["uid"]))
            else:
                out.requeue_after = left
        return out
    if md.get("deletionTimestamp"):
        return out

    # counts
    succeeded_indexes = {i for p in succeeded if (i := pod_index(p)) is not None
                         and completions is not None and 0 <= i < int(completions)}
    status["succeeded"] = len(succeeded_indexes) if indexed else len(succeeded)
    if indexed:
        status["completedIndexes"] = format_indexes(succeeded_indexes)
    status["failed"] = max(int(old.get("failed") or 0), len(failed))
    status["ready"] = sum(1 for p in active if podstate.is_ready(p))
    status["active"] = len(active)
    status["terminating"] = sum(1 for p in pods if podstate.is_terminating(p)
                                and not podstate.is_finished(p))

    # suspension
    if spec.get("suspend"):
        delete_all(active)
        status["active"] = 0
        status["ready"] = 0
        set_cond("Suspended", "True", "JobSuspended", "Job suspended")
        return out
    suspended = find_condition(old.get("conditions"), "Suspended")
    if suspended is not None and suspended.get("status") == "True":
        set_cond("Suspended", "False", "JobResumed", "Job resumed")
        status["startTime"] = stamp
    status.setdefault("startTime", stamp)
    start = podstate.parse_time(status["startTime"]) or now

    # failure
    failures = status["failed"]
    if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
        failures += sum(int(c.get("restartCount") or 0) for p in active
                        for c in (p.get("status") or {}).get("containerStatuses") or ())
    target = find_condition(old.get("conditions"), "FailureTarget")
    why: tuple[str, str] | None = None
    if target is not None and target.get("status") == "True":
        why = (str(target.get("reason") or ""), str(target.get("message") or ""))
    elif policy_failure is not None:
        why = ("PodFailurePolicy", policy_failure)
    elif failures > int(spec.get("backoffLimit", 6)):
        why = BACKOFF_LIMIT
    elif spec.get("activeDeadlineSeconds") is not None:
        deadline = start + timedelta(seconds=int(spec["activeDeadlineSeconds"]))
        if deadline <= now:
            why = DEADLINE
        else:
            out.requeue_after = (deadline - now).total_seconds()
    if why is not None:
        set_cond("FailureTarget", "True", *why)
        status["failed"] += delete_all(active)
        status["active"] = status["ready"] = 0
        if not status["terminating"] and not active:
            set_cond("Failed", "True", *why)
        return out

    # success
    if indexed:
        done = completions is not None and len(succeeded_indexes) >= int(completions)
    elif completions is not None:
        done = len(succeeded) >= int(completions)
    else:
        done = bool(succeeded) and not active
    if done:
        delete_all(active)
        set_cond("SuccessCriteriaMet", "True", *COMPLETIONS)
        if not active and not status["terminating"]:
            set_cond("Complete", "True", *COMPLETIONS)
            status["completionTime"] = stamp
        status["active"] = status["ready"] = 0
        return out

    # how many run
    if failed and status["failed"] > 0:
        last = max((t for p in failed if (t := failure_time(p)) is not None), default=None)
        last_success = max((t for p in succeeded if (t := failure_time(p)) is not None),
                           default=None)
        streak = sum(1 for p in failed
                     if last_success is None or (failure_time(p) or now) >= last_success)
        if last is not None and streak > 0:
            delay = min(backoff_base * 2 ** (streak - 1), backoff_cap)
            wait = (last + timedelta(seconds=delay) - now).total_seconds()
            if wait > 0:
                out.requeue_after = min(out.requeue_after or wait, wait)
                return out
    if indexed:
        busy = {i for p in active if (i := pod_index(p)) is not None}
        excess = [p for p in active if pod_index(p) is None or pod_index(p) in succeeded_indexes
                  or int(pod_index(p) or 0) >= int(completions or 0)]
        seen: set[int] = set()
        for pod in sorted(active, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
            i = pod_index(pod)
            if i is not None and i in seen:
                excess.append(pod)
            elif i is not None:
                seen.add(i)
        keep = [p for p in active if p not in excess]
        if len(keep) > parallelism:
            excess += sorted(keep, key=_age_order)[:len(keep) - parallelism]
        delete_all(excess)
        room = parallelism - (len(active) - len(excess))
        for i in range(int(completions or 0)):
            if room <= 0:
                break
            if i in succeeded_indexes or i in busy:
                continue
            acts.append(CreatePod(build_pod(job, i)))
            room -= 1
        return out
    if completions is not None:
        wanted = max(min(parallelism, int(completions) - len(succeeded)), 0)
    else:
        wanted = parallelism if not succeeded else min(parallelism, len(active))
    if len(active) > wanted:
        delete_all(sorted(active, key=_age_order)[:len(active) - wanted])
    for _ in range(wanted - len(active)):
        acts.append(CreatePod(build_pod(job)))
    return out


def condition_events(old: JSON, new: JSON) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events kube's job controller emits for
    the conditions that turned True between ``old`` and ``new`` status."""
    out = []
    for cond in new.get("conditions") or ():
        if cond.get("status") != "True":
            continue
        before = find_condition(old.get("conditions"), cond["type"])
        if before is not None and before.get("status") == "True":
            continue
        if cond["type"] == "Complete":
            out.append(("Normal", "Completed", "Job completed"))
        elif cond["type"] == "Failed":
            out.append(("Warning", str(cond.get("reason") or "Failed"),
                        str(cond.get("message") or "")))
        elif cond["type"] == "Suspended":
            out.append(("Normal", "Suspended", "Job suspended"))
    suspended = find_condition(new.get("conditions"), "Suspended")
    was = find_condition(old.get("conditions"), "Suspended")
    if suspended is not None and suspended.get("status") == "False" and \
            was is not None and was.get("status") == "True":
        out.append(("Normal", "Resumed", "Job resumed"))
    return out


# -- the shell --------------------------------------------------------------


class JobController:
    """Watches Jobs and their pods."""

    def __init__(self, client: Client, *, workers: int = 2, backoff: Backoff = DEFAULT_BACKOFF,
                 clock: Callable[[], datetime] = utcnow,
                 pod_failure_backoff: float = POD_FAILURE_BACKOFF,
                 max_pod_failure_backoff: float = MAX_POD_FAILURE_BACKOFF,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self._backoff = (pod_failure_backoff, max_pod_failure_backoff)
        self.controller: Controller[Key] = Controller(
            "job", self.reconcile, workers=workers, backoff=backoff)
        self.events = EventRecorder(client, "job-controller")
        add = self.controller.queue.add
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.jobs = self.informers.get("batch/v1", "Job", transform=metadata_only)
        self.jobs.add_handler(podstate.enqueue_self(add))
        # the shared pod informer; only pods with a Job's job-name label are looked at
        self.pods = self.informers.get("v1", "Pod")
        self.pods.add_handler(filtered(has_label(JOB_NAME_LABELS[0]),
                                       podstate.enqueue_controller("Job", add)))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="job-informers")
            group.create_task(self.events.run(), name="job-events")
            group.create_task(self.controller.run(), name="job-controller")

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        c = self.client
        try:
            job = await c.get("batch/v1", "Job", name, namespace=namespace)
        except NotFoundError:
            return None
        job.setdefault("apiVersion", "batch/v1")
        job.setdefault("kind", "Job")
        spec = job.get("spec") or {}
        uid = job["metadata"]["uid"]
        selector = spec.get("selector") or {"matchLabels": {UID_LABELS[0]: uid}}
        pods = await controlled_pods(c, job, selector)
        result = plan(job, pods, now=self._clock(), backoff_base=self._backoff[0],
                      backoff_cap=self._backoff[1])
        ref = reference(job)
        for action in result.actions:
            if isinstance(action, CreatePod):
                made = await c.create(action.pod)
                self.events.record(ref, "Normal", "SuccessfulCreate",
                                   f"Created pod: {made['metadata']['name']}")
            elif isinstance(action, DeletePod):
                try:
                    await c.delete("v1", "Pod", action.name, namespace=namespace,
                                   preconditions={"uid": action.uid},
                                   propagation_policy="Background")
                except (NotFoundError, ConflictError):
                    continue
                self.events.record(ref, "Normal", "SuccessfulDelete",
                                   f"Deleted pod: {action.name}")
        for type_, reason, message in condition_events(job.get("status") or {}, result.status):
            self.events.record(ref, type_, reason, message)
        if result.status != (job.get("status") or {}):
            body = copy.deepcopy(job)
            body["status"] = result.status
            try:
                await c.update_status(body)
            except ConflictError as exc:
                raise TemporaryError("job changed meanwhile", delay=0.05) from exc
            except NotFoundError:
                return None
        if any(isinstance(a, DeleteJob) for a in result.actions):
            try:
                await c.delete("batch/v1", "Job", name, namespace=namespace,
                               propagation_policy="Foreground", preconditions={"uid": uid})
            except (NotFoundError, ConflictError):
                pass
            return None
        if result.requeue_after is not None:
            return Result(requeue_after=result.requeue_after)
        return None


__all__ = [
    "INDEX_KEY",
    "CreatePod",
    "DeleteJob",
    "DeletePod",
    "JobController",
    "Plan",
    "build_pod",
    "format_indexes",
    "plan",
]
