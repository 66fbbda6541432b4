"""The DaemonSet controller (kube-controller-manager's daemonset controller).

One pod per eligible node: a node is eligible when it matches the
template's ``nodeSelector`` and required node affinity and every
NoSchedule/NoExecute taint on it is tolerated, counting the tolerations
Kubernetes adds to every daemon pod (not-ready and unreachable NoExecute;
disk-, memory-, pid-pressure and unschedulable NoSchedule;
network-unavailable for host-network pods). A pod already running stays
while its NoExecute taints are tolerated. Pods are pinned to their node by
required node affinity on ``metadata.name`` (as kube does since 1.12) and
the scheduler binds them. ``updateStrategy: RollingUpdate`` replaces pods
whose ``controller-revision-hash`` is not the template's, keeping at most
``maxUnavailable`` nodes without an available pod, or, with ``maxSurge``,
starting the new pod beside the old one on at most that many nodes at a
time and deleting the old one once the new one is available; ``OnDelete`` replaces a
pod when a user deletes it. Pods on nodes that are gone or no longer
eligible are deleted, failed pods are replaced. Status is what ``kubectl
rollout status daemonset/x`` reads.

Pure: :func:`plan` (with :func:`build_pod`, :func:`should_run`); the shell:
:class:`DaemonSetController`, started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
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
from kubevisor.controllers import history, nodefit, podstate, revisions
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.podclaims import controlled_pods
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
GENERATION_LABEL = "pod-template-generation"

#: What kube adds to every daemon pod (``AddOrUpdateDaemonPodTolerations``).
DAEMON_TOLERATIONS: tuple[JSON, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION: JSON = {"key": "node.kubernetes.io/network-unavailable",
                                 "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True, slots=True)
class CreatePod:
    node: str
    pod: JSON


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    uid: str
    why: str


Action = CreatePod | DeletePod


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: JSON = field(default_factory=dict)


# -- builders ---------------------------------------------------------------


def daemon_tolerations(pod_spec: JSON) -> list[JSON]:
    """The template's tolerations plus the daemon ones it lacks."""
    tols = list(pod_spec.get("tolerations") or [])
    wanted = list(DAEMON_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        wanted.append(HOST_NETWORK_TOLERATION)
    for tol in wanted:
        if not any(t.get("key") == tol["key"] and t.get("effect") == tol["effect"]
                   for t in tols):
            tols.append(dict(tol))
    return tols


def pinned_affinity(pod_spec: JSON, node_name: str) -> JSON:
    """The template's affinity with required node affinity replaced by one
    term selecting ``node_name`` by ``metadata.name``."""
    affinity = copy.deepcopy(pod_spec.get("affinity") or {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
    return affinity


def build_pod(ds: JSON, node_name: str, hash_: str) -> JSON:
    md, spec = ds["metadata"], ds.get("spec") or {}
    tpl = copy.deepcopy(spec.get("template") or {})
    tmd = tpl.get("metadata") or {}
    pod_spec: JSON = tpl.get("spec") or {}
    pod_spec["tolerations"] = daemon_tolerations(pod_spec)
    pod_spec["affinity"] = pinned_affinity(pod_spec, node_name)
    labels = {**(tmd.get("labels") or {}), revisions.HASH_LABEL: hash_,
              GENERATION_LABEL: str(md.get("generation", 1))}
    pod_md: JSON = {"generateName": f"{md['name']}-", "namespace": md["namespace"],
                    "labels": labels, "ownerReferences": [owner_reference(ds)]}
    if tmd.get("annotations"):
        pod_md["annotations"] = tmd["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": pod_spec}


# -- the plan ---------------------------------------------------------------


def should_run(template_spec: JSON, node: JSON) -> tuple[bool, bool]:
    """(should a new daemon pod go there, may an existing one stay)."""
    if not nodefit.matches_node(template_spec, node):
        return False, False
    tols = daemon_tolerations(template_spec)
    taints = nodefit.node_taints(node)
    stay = not nodefit.untolerated(tols, taints, ("NoExecute",))
    run = stay and not nodefit.untolerated(tols, taints, ("NoSchedule",))
    return run, stay


def target_node(pod: JSON) -> str:
    """The node a daemon pod is for: its nodeName, else its pinned affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    for term in required.get("nodeSelectorTerms") or ():
        for f in term.get("matchFields") or ():
            if f.get("key") == "metadata.name" and f.get("operator") == "In" \
                    and len(f.get("values") or ()) == 1:
                return str(f["values"][0])
    return ""


def scaled_value(value: Any, total: int) -> int:
    """An IntOrString (``2`` or ``"25%"``) against ``total``, percentages rounded up."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value or 0)


def _created(pod: JSON) -> tuple[str, str]:
    md = pod.get("metadata") or {}
    return (str(md.get("creationTimestamp") or ""), str(md.get("name") or ""))


def plan(ds: JSON, nodes: Iterable[JSON], pods: Iterable[JSON], *, now: datetime) -> Plan:
    """What ``ds`` needs next, given every node and the pods it controls."""
    md, spec = ds["metadata"], ds.get("spec") or {}
    template = spec.get("template") or {}
    hash_ = revisions.template_hash(template)
    min_ready = int(spec.get("minReadySeconds") or 0)
    by_node: dict[str, list[JSON]] = {}
    for pod in sorted(pods, key=_created):
        by_node.setdefault(target_node(pod), []).append(pod)
    status: JSON = {"observedGeneration": md.get("generation", 0),
                    "desiredNumberScheduled": 0, "currentNumberScheduled": 0,
                    "numberMisscheduled": 0, "numberReady": 0, "numberAvailable": 0,
                    "updatedNumberScheduled": 0, "numberUnavailable": 0}
    out = Plan(status=status)
    acts = out.actions
    deleting = bool(md.get("deletionTimestamp"))
    eligibility = {n["metadata"]["name"]: should_run(template.get("spec") or {}, n)
                   for n in nodes}
    desired = sum(1 for run, _ in eligibility.values() if run)
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate" and not deleting
    budget = strategy.get("rollingUpdate") or {}
    surge = scaled_value(budget.get("maxSurge", 0), desired) if rolling else 0

    def available(pod: JSON | None) -> bool:
        return pod is not None and podstate.is_available(pod, min_ready, now)

    def delete(pod: JSON, why: str) -> None:
        acts.append(DeletePod(pod["metadata"]["name"], pod["metadata"]["uid"], why))

    # node name -> (its pod of an old revision, its updated pod), for nodes that want one
    serving: dict[str, tuple[JSON | None, JSON | None]] = {}
    for name in sorted(eligibility):
        run, stay = eligibility[name]
        node_pods = by_node.get(name, [])
        live = [p for p in node_pods if not podstate.is_terminating(p)]
        if run:
            status["desiredNumberScheduled"] += 1
            if node_pods:
                status["currentNumberScheduled"] += 1
        elif node_pods:
            status["numberMisscheduled"] += 1
        if not (run or (stay and live)):
            for pod in live:
                delete(pod, f"node {name} is not eligible")
            continue
        for pod in live:
            if podstate.phase(pod) == "Failed":
                delete(pod, f"failed on node {name}")
        live = [p for p in live if podstate.phase(p) != "Failed"]
        new = [p for p in live if _revision(p, ds) == hash_]
        old = [p for p in live if _revision(p, ds) != hash_]
        if surge:  # one old and one updated pod may live side by side for a while
            keep_old, keep_new = (old[0] if old else None), (new[0] if new else None)
            extras = old[1:] + new[1:]
            if keep_old is not None and available(keep_new):
                extras.append(keep_old)
                keep_old = None
        else:
            keep = live[0] if live else None
            extras = live[1:]
            keep_old, keep_new = (keep, None) if keep in old else (None, keep)
        for pod in extras:
            delete(pod, f"more than one daemon pod on node {name}")
        if keep_old is None and keep_new is None:
            if run and not deleting:
                acts.append(CreatePod(name, build_pod(ds, name, hash_)))
        if not run:
            continue
        serving[name] = (keep_old, keep_new)
        shown = keep_new if keep_old is None or available(keep_new) else keep_old
        if shown is not None and podstate.is_ready(shown):
            status["numberReady"] += 1
        if available(shown):
            status["numberAvailable"] += 1
        if keep_new is not None:
            status["updatedNumberScheduled"] += 1
    for name, node_pods in by_node.items():
        if name in eligibility:
            continue
        for pod in node_pods:
            if not podstate.is_terminating(pod):
                delete(pod, f"node {name!r} does not exist")
    status["numberUnavailable"] = status["desiredNumberScheduled"] - status["numberAvailable"]
    if not rolling:
        return out
    if surge:
        # an updated pod joins each old one, at most maxSurge nodes at a time;
        # the old one goes once the new one is available (above)
        surging = sum(1 for o, n in serving.values() if o is not None and n is not None)
        for name, (old_pod, new_pod) in sorted(serving.items()):
            if old_pod is None or new_pod is not None:
                continue
            if available(old_pod) and surging >= surge:
                continue
            acts.append(CreatePod(name, build_pod(ds, name, hash_)))
            surging += available(old_pod)
        return out
    # old pods go, keeping at most maxUnavailable nodes unavailable
    max_unavailable = scaled_value(budget.get("maxUnavailable", 1), desired) or 1
    unavailable = sum(1 for o, n in serving.values() if not available(o or n))
    old_available = []
    for old_pod, _ in serving.values():
        if old_pod is None:
            continue
        if available(old_pod):
            old_available.append(old_pod)
        else:
            delete(old_pod, "old revision, unavailable")
    for pod in old_available:
        if unavailable >= max_unavailable:
            break
        delete(pod, "old revision")
        unavailable += 1
    return out


def _revision(pod: JSON, ds: JSON) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(revisions.HASH_LABEL, ""))


# -- the shell --------------------------------------------------------------

STATUS_FIELDS = ("observedGeneration", "desiredNumberScheduled", "currentNumberScheduled",
                 "numberMisscheduled", "numberReady", "numberAvailable",
                 "updatedNumberScheduled", "numberUnavailable")


class DaemonSetController:
    """Watches DaemonSets, their pods and every Node."""

    def __init__(self, client: Client, *, workers: int = 2, backoff: Backoff = DEFAULT_BACKOFF,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self.controller: Controller[Key] = Controller(
            "daemonset", self.reconcile, workers=workers, backoff=backoff)
        self.events = EventRecorder(client, "daemonset-controller")
        add = self.controller.queue.add
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.sets = self.informers.get("apps/v1", "DaemonSet", transform=metadata_only)
        self.sets.add_handler(podstate.enqueue_self(add))
        # the shared pod informer; only pods with a DaemonSet's
        # template-generation label are looked at
        self.pods = self.informers.get("v1", "Pod")
        self.pods.add_handler(filtered(has_label(GENERATION_LABEL),
                                       podstate.enqueue_controller("DaemonSet", add)))
        self.nodes = self.informers.get("v1", "Node")
        self.nodes.add_handler(self._on_node)

    def _on_node(self, etype: str, obj: JSON, old: JSON | None) -> None:
        if old is not None and etype == "MODIFIED" and _eligibility_view(old) == \
                _eligibility_view(obj):
            return  # only what decides eligibility matters (not the status)
        for key in self.sets.keys():
            self.controller.queue.add(key)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="daemonset-informers")
            await self.informers.wait_synced(self.nodes)
            group.create_task(self.events.run(), name="daemonset-events")
            group.create_task(self.controller.run(), name="daemonset-controller")

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        c = self.client
        try:
            ds = await c.get("apps/v1", "DaemonSet", name, namespace=namespace)
        except NotFoundError:
            return None
        ds.setdefault("apiVersion", "apps/v1")
        ds.setdefault("kind", "DaemonSet")
        spec = ds.get("spec") or {}
        pods = await controlled_pods(c, ds, spec.get("selector"))
        revs = await history.load(c, ds)
        current = await history.ensure(c, ds, spec.get("template") or {}, revs)
        result = plan(ds, self.nodes.items(), pods, now=self._clock())
        ref = reference(ds)
        for action in result.actions:
            if isinstance(action, CreatePod):
                made = await c.create(action.pod)
                self.events.record(ref, "Normal", "SuccessfulCreate",
                                   f"Created pod: {made['metadata']['name']}")
                continue
            try:
                await c.delete("v1", "Pod", action.name, namespace=namespace,
                               preconditions={"uid": action.uid})
            except (NotFoundError, ConflictError):
                continue
            self.events.record(ref, "Normal", "SuccessfulDelete",
                               f"Deleted pod: {action.name}")
        await self._write_status(ds, result.status)
        name_of = {revisions.template_hash(revisions.template_of(r) or {}): n
                   for n, r in revs.items()}
        await history.prune(c, ds, revs, in_use={current, *(
            name_of.get(_revision(p, ds), "") for p in pods)})
        min_ready = int(spec.get("minReadySeconds") or 0)
        if min_ready and result.status["numberAvailable"] < result.status["numberReady"]:
            return Result(requeue_after=1.0)
        return None

    async def _write_status(self, ds: JSON, status: JSON) -> None:
        old = ds.get("status") or {}
        if all(old.get(k) == status.get(k) for k in STATUS_FIELDS):
            return
        body = copy.deepcopy(ds)
        body["status"] = {**old, **status}
        try:
            await self.client.update_status(body)
        except ConflictError as exc:
            raise TemporaryError("daemonset changed meanwhile", delay=0.05) from exc
        except NotFoundError:
            pass


def _eligibility_view(node: JSON) -> tuple[Any, Any]:
    """What eligibility reads of a node: its labels and taints."""
    return ((node.get("metadata") or {}).get("labels") or {},
            (node.get("spec") or {}).get("taints") or [])


__all__ = [
    "DAEMON_TOLERATIONS",
    "CreatePod",
    "DaemonSetController",
    "DeletePod",
    "Plan",
    "build_pod",
    "plan",
    "should_run",
]
