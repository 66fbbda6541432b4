"""The node lifecycle controller (kube-controller-manager's node lifecycle
and taint-eviction controllers).

A node agent renews its Lease in ``kube-node-lease`` every 10 s and posts
its Ready condition. When neither changes for ``grace`` seconds (40 s,
kube's node-monitor-grace-period; 60 s for a node that never posted
Ready), the node's Ready, MemoryPressure, DiskPressure and PIDPressure
conditions become Unknown (reason NodeStatusUnknown, "Kubelet stopped
posting node status."). The node's taints follow its conditions (kube's
TaintNodesByCondition and taint-based evictions): Ready Unknown →
``node.kubernetes.io/unreachable`` NoExecute and NoSchedule, Ready False →
``node.kubernetes.io/not-ready`` likewise, pressure conditions and
``spec.unschedulable`` → their NoSchedule taints; they go when the
condition does. Pods on a node that is not Ready get Ready=False. A pod on
a node with NoExecute taints is deleted once its tolerations run out (at
once if it tolerates none; the apiserver gives every pod 300 s for
not-ready and unreachable), counted from the taint's ``timeAdded``. Pods
bound to a Node that was deleted are deleted (grace 0) once it has been
gone for ``grace`` seconds (kube's pod garbage collector).

"When did the node last speak" is the controller's own clock at the
moment it saw the lease or heartbeat change (as kube does, so clock skew
between hosts does not matter); after a restart every node gets a fresh
grace period. The clock is injectable so tests need not wait 40 s.

Pure: :func:`node_conditions`, :func:`node_taints`, :func:`plan_pods`; the
shell: :class:`NodeLifecycleController`, started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubevisor.client import Client, ConflictError, NotFoundError, SharedInformers
from kubevisor.controllers import nodefit, podstate
from kubevisor.controllers.conditions import find_condition
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
LEASE_NAMESPACE = "kube-node-lease"
GRACE = 40.0
STARTUP_GRACE = 60.0
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
#: condition type -> the NoSchedule taint it puts on the node when True.
PRESSURE_TAINTS = {
    "MemoryPressure": "node.kubernetes.io/memory-pressure",
    "DiskPressure": "node.kubernetes.io/disk-pressure",
    "PIDPressure": "node.kubernetes.io/pid-pressure",
    "NetworkUnavailable": "node.kubernetes.io/network-unavailable",
}
MANAGED_TAINTS = frozenset({UNREACHABLE, NOT_READY, UNSCHEDULABLE, *PRESSURE_TAINTS.values()})
UNKNOWN_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


# -- pure -------------------------------------------------------------------


def heartbeat(node: JSON, lease: JSON | None) -> tuple[str, ...]:
    """What changes whenever the node's agent speaks."""
    ready = find_condition((node.get("status") or {}).get("conditions"), "Ready") or {}
    renew = str(((lease or {}).get("spec") or {}).get("renewTime") or "")
    return (renew, str(ready.get("lastHeartbeatTime") or ""), str(ready.get("status") or ""))


def node_conditions(node: JSON, *, last_seen: datetime, now: datetime,
                    grace: float = GRACE, startup_grace: float = STARTUP_GRACE,
                    ) -> tuple[list[JSON] | None, float | None]:
    """The node's conditions once the agent is overdue (None: unchanged), and
    in how many seconds to look again."""
    conditions = list((node.get("status") or {}).get("conditions") or [])
    ready = find_condition(conditions, "Ready")
    limit = grace if ready is not None else startup_grace
    overdue = (now - last_seen).total_seconds() - limit
    if overdue <= 0:
        return None, -overdue + 0.05
    stamp = rfc3339(now)
    if ready is None:
        created = (node.get("metadata") or {}).get("creationTimestamp") or stamp
        return [*conditions, {"type": "Ready", "status": "Unknown",
                              "reason": "NodeStatusNeverUpdated",
                              "message": "Kubelet never posted node status.",
                              "lastHeartbeatTime": created, "lastTransitionTime": stamp}], None
    out, changed = [], False
    for cond in conditions:
        if cond.get("type") in UNKNOWN_CONDITIONS and cond.get("status") != "Unknown":
            cond = {**cond, "status": "Unknown", "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": stamp}
            changed = True
        out.append(cond)
    return (out if changed else None), None


def node_taints(node: JSON, *, now: datetime) -> list[JSON] | None:
    """The node's taints as its conditions and ``spec.unschedulable`` say
    (None: unchanged). Taints this controller does not manage are kept."""
    spec, status = node.get("spec") or {}, node.get("status") or {}
    conditions = status.get("conditions")
    ready = (find_condition(conditions, "Ready") or {}).get("status")
    wanted: set[tuple[str, str]] = set()
    if ready == "Unknown":
        wanted |= {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
    elif ready == "False":
        wanted |= {(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")}
    for type_, key in PRESSURE_TAINTS.items():
        if (find_condition(conditions, type_) or {}).get("status") == "True":
            wanted.add((key, "NoSchedule"))
    if spec.get("unschedulable"):
        wanted.add((UNSCHEDULABLE, "NoSchedule"))
    current = list(spec.get("taints") or [])
    kept = [t for t in current if t.get("key") not in MANAGED_TAINTS
            or (t.get("key"), t.get("effect")) in wanted]
    have = {(t.get("key"), t.get("effect")) for t in kept}
    for key, effect in sorted(wanted - have):
        taint: JSON = {"key": key, "effect": effect}
        if effect == "NoExecute":
            taint["timeAdded"] = rfc3339(now)
        kept.append(taint)
    return kept if kept != current else None


@dataclass(frozen=True, slots=True)
class MarkNotReady:
    pod: JSON


@dataclass(frozen=True, slots=True)
class Evict:
    name: str
    namespace: str
    uid: str


PodAction = MarkNotReady | Evict


@dataclass(slots=True)
class PodPlan:
    actions: list[PodAction] = field(default_factory=list)
    requeue_after: float | None = None


def plan_pods(node: JSON, pods: Iterable[JSON], *, now: datetime) -> PodPlan:
    """Pods on a node that is not Ready lose Ready; pods whose tolerations of
    the node's NoExecute taints have run out are evicted."""
    out = PodPlan()
    ready = (find_condition((node.get("status") or {}).get("conditions"), "Ready")
             or {}).get("status")
    no_execute = [t for t in nodefit.node_taints(node) if t.get("effect") == "NoExecute"]
    added = [t for x in no_execute if (t := podstate.parse_time(x.get("timeAdded"))) is not None]
    since = max(added) if added else now
    for pod in pods:
        if podstate.is_terminating(pod) or podstate.is_finished(pod):
            continue
        md = pod["metadata"]
        if no_execute:
            seconds = nodefit.toleration_seconds((pod.get("spec") or {}).get("tolerations") or (),
                                                 no_execute)
            if seconds is not None:
                left = (since + timedelta(seconds=seconds) - now).total_seconds()
                if left <= 0:
                    out.actions.append(Evict(md["name"], md["namespace"], md["uid"]))
                    continue
                out.requeue_after = min(out.requeue_after or left, left)
        if ready != "True" and podstate.is_ready(pod):
            out.actions.append(MarkNotReady(pod))
    return out


def not_ready(pod: JSON, now: datetime) -> JSON:
    """``pod`` (a copy) with its Ready condition False."""
    body = copy.deepcopy(pod)
    conditions = (body.setdefault("status", {})).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "Ready":
            cond["status"] = "False"
            cond["lastTransitionTime"] = rfc3339(now)
    body["status"]["conditions"] = conditions
    return body


# -- the shell --------------------------------------------------------------


class NodeLifecycleController:
    """Watches Nodes and their Leases; looks at the pods of unhealthy nodes."""

    def __init__(self, client: Client, *, workers: int = 2, backoff: Backoff = DEFAULT_BACKOFF,
                 clock: Callable[[], datetime] = utcnow, grace: float = GRACE,
                 startup_grace: float = STARTUP_GRACE,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self._grace = (grace, startup_grace)
        #: node -> (heartbeat seen, when this controller saw it change)
        self._seen: dict[str, tuple[tuple[str, ...], datetime]] = {}
        #: node -> when this controller first found it gone while pods were bound to it
        self._missing: dict[str, datetime] = {}
        self.controller: Controller[str] = Controller(
            "node-lifecycle", self.reconcile, workers=workers, backoff=backoff)
        self.events = EventRecorder(client, "node-controller")
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.nodes = self.informers.get("v1", "Node")
        self.nodes.add_handler(self._on_node)
        self.leases = self.informers.get("coordination.k8s.io/v1", "Lease",
                                         namespace=LEASE_NAMESPACE)
        self.leases.add_handler(self._on_node)

    def _on_node(self, etype: str, obj: JSON, old: JSON | None) -> None:
        self.controller.queue.add((obj.get("metadata") or {}).get("name") or "")

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="nodelifecycle-informers")
            group.create_task(self.events.run(), name="nodelifecycle-events")
            await self.informers.wait_synced(self.nodes, self.leases)
            group.create_task(self.controller.run(), name="nodelifecycle-controller")

    def last_seen(self, name: str, node: JSON, lease: JSON | None, now: datetime) -> datetime:
        beat = heartbeat(node, lease)
        seen = self._seen.get(name)
        if seen is None or seen[0] != beat:
            self._seen[name] = (beat, now)
            return now
        return seen[1]

    async def reconcile(self, name: str) -> Result | None:
        c = self.client
        cached = self.nodes.get(name)  # shared: never mutated, copied before a write
        if cached is None:
            self._seen.pop(name, None)
            return await self._collect_orphans(name)
        self._missing.pop(name, None)
        node = {"apiVersion": "v1", "kind": "Node", **cached}
        now = self._clock()
        lease = self.leases.get(name, LEASE_NAMESPACE)
        last = self.last_seen(name, node, lease, now)
        conditions, recheck = node_conditions(node, last_seen=last, now=now,
                                              grace=self._grace[0],
                                              startup_grace=self._grace[1])
        if conditions is not None:
            body = copy.deepcopy(node)
            body.setdefault("status", {})["conditions"] = conditions
            node = await self._write(c.update_status, body)
            # our own write is not the agent speaking
            self._seen[name] = (heartbeat(node, lease), last)
        taints = node_taints(node, now=now)
        if taints is not None:
            body = copy.deepcopy(node)
            body.setdefault("spec", {})["taints"] = taints
            if not taints:
                del body["spec"]["taints"]
            node = await self._write(c.update, body)
        waits = [w for w in (recheck,) if w is not None]
        ready = (find_condition((node.get("status") or {}).get("conditions"), "Ready")
                 or {}).get("status")
        if ready != "True" or any(t.get("effect") == "NoExecute"
                                  for t in nodefit.node_taints(node)):
            listed = await c.list("v1", "Pod", field_selector=f"spec.nodeName={name}")
            pod_plan = plan_pods(node, listed.get("items") or [], now=now)
            for action in pod_plan.actions:
                await self._apply(action, now)
            if pod_plan.requeue_after is not None:
                waits.append(pod_plan.requeue_after)
            # pods bound to it later (tolerating its taints) are seen on the next look
            waits.append(self._grace[0] / 4)
        return Result(requeue_after=min(waits)) if waits else None

    async def _collect_orphans(self, name: str) -> Result | None:
        """Pods bound to a node that no longer exists are deleted at once (no
        agent will confirm), after a quarantine of ``grace`` seconds in case
        the node comes back (kube's pod garbage collector)."""
        c = self.client
        try:
            await c.get("v1", "Node", name)
            return None  # the cache is behind: the node's event brings it back
        except NotFoundError:
            pass
        listed = await c.list("v1", "Pod", field_selector=f"spec.nodeName={name}")
        pods = listed.get("items") or []
        if not pods:
            self._missing.pop(name, None)
            return None
        now = self._clock()
        since = self._missing.setdefault(name, now)
        left = (since + timedelta(seconds=self._grace[0]) - now).total_seconds()
        if left > 0:
            return Result(requeue_after=left)
        for pod in pods:
            md = pod["metadata"]
            try:
                await c.delete("v1", "Pod", md["name"], namespace=md["namespace"],
                               grace_period_seconds=0, preconditions={"uid": md["uid"]})
            except (NotFoundError, ConflictError):
                continue
            self.events.record(reference(pod), "Normal", "PodGCOrphaned",
                               f"Deleted orphaned pod {md['namespace']}/{md['name']}: "
                               f"node {name} is gone")
        self._missing.pop(name, None)
        return None

    async def _write(self, verb: Callable[[JSON], Any], body: JSON) -> JSON:
        try:
            written: JSON = await verb(body)
        except ConflictError as exc:
            raise TemporaryError("node changed meanwhile", delay=0.05) from exc
        return written

    async def _apply(self, action: PodAction, now: datetime) -> None:
        c = self.client
        if isinstance(action, Evict):
            try:
                await c.delete("v1", "Pod", action.name, namespace=action.namespace,
                               preconditions={"uid": action.uid})
            except (NotFoundError, ConflictError):
                return
            self.events.record({"kind": "Pod", "apiVersion": "v1", "name": action.name,
                                "namespace": action.namespace, "uid": action.uid},
                               "Normal", "TaintManagerEviction",
                               f"Marking for deletion Pod {action.namespace}/{action.name}")
            return
        try:
            await c.update_status(not_ready(action.pod, now))
        except (NotFoundError, ConflictError):
            return  # gone, or changed: the pod's next event brings it back
        self.events.record(reference(action.pod), "Warning", "NodeNotReady", "Node is not ready")


__all__ = [
    "GRACE",
    "Evict",
    "MarkNotReady",
    "NodeLifecycleController",
    "node_conditions",
    "node_taints",
    "plan_pods",
]
