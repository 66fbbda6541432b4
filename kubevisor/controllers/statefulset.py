"""The StatefulSet controller (kube-controller-manager's statefulset controller).

A StatefulSet ``web`` with ``replicas: N`` owns pods ``web-0`` … ``web-N-1``
with stable names, hostnames (``spec.hostname``, ``spec.subdomain`` from
``serviceName``), the labels ``statefulset.kubernetes.io/pod-name`` and
``apps.kubernetes.io/pod-index``, and one PersistentVolumeClaim
``<claim>-web-<i>`` per volumeClaimTemplate, created before the pod and
kept when the set scales down (``persistentVolumeClaimRetentionPolicy``
Retain; with ``whenScaled: Delete`` they go once their pod has, with
``whenDeleted: Delete`` the set owns them and the garbage collector
deletes them with it). With
``podManagementPolicy: OrderedReady`` pod i is created only once pods
0..i-1 are Running and Ready, and scale-down removes the highest ordinal
first, one at a time; ``Parallel`` creates and deletes all at once.
``updateStrategy: RollingUpdate`` replaces pods from the highest ordinal
down to ``partition``, one at a time, each waiting for the previous to be
Running and Ready; ``OnDelete`` replaces a pod only when a user deletes
it. Each template version is a ControllerRevision ``web-<hash>`` whose
name is the pods' ``controller-revision-hash`` label; pods below the
partition are re-created from the current revision. Status is what
``kubectl rollout status statefulset/web`` reads.

Pure: :func:`plan` (with :func:`build_pod`, :func:`build_claims`); the
shell: :class:`StatefulSetController`, started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubevisor.api.meta import owner_reference
from kubevisor.client import (
    AlreadyExistsError,
    Client,
    ConflictError,
    NotFoundError,
    SharedInformers,
    filtered,
    has_label,
)
from kubevisor.controllers import history, podstate, revisions
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.podclaims import controlled_pods
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


@dataclass(frozen=True, slots=True)
class CreateClaim:
    claim: JSON


@dataclass(frozen=True, slots=True)
class CreatePod:
    pod: JSON


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class DeleteClaim:
    name: str


Action = CreateClaim | CreatePod | DeletePod | DeleteClaim


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: JSON = field(default_factory=dict)


# -- builders ---------------------------------------------------------------


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    match = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", pod_name)
    return int(match.group(1)) if match else None


def claim_name(template_name: str, set_name: str, ordinal: int) -> str:
    return f"{template_name}-{set_name}-{ordinal}"


def build_claims(sts: JSON, ordinal: int) -> list[JSON]:
    """The PersistentVolumeClaims pod ``ordinal`` mounts."""
    md, spec = sts["metadata"], sts.get("spec") or {}
    selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    out = []
    for tpl in spec.get("volumeClaimTemplates") or ():
        tmd = tpl.get("metadata") or {}
        claim: JSON = {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": claim_name(tmd.get("name", ""), md["name"], ordinal),
                "namespace": md["namespace"],
                "labels": {**(tmd.get("labels") or {}), **selector_labels},
            },
            "spec": copy.deepcopy(tpl.get("spec") or {}),
        }
        if tmd.get("annotations"):
            claim["metadata"]["annotations"] = dict(tmd["annotations"])
        if retention.get("whenDeleted") == "Delete":
            claim["metadata"]["ownerReferences"] = [owner_reference(sts)]
        out.append(claim)
    return out


def build_pod(sts: JSON, template: JSON, ordinal: int, revision: str) -> JSON:
    """Pod ``ordinal`` of ``sts`` from ``template`` (of revision ``revision``)."""
    md, spec = sts["metadata"], sts.get("spec") or {}
    name = f"{md['name']}-{ordinal}"
    tpl = copy.deepcopy(template)
    tmd = tpl.get("metadata") or {}
    pod_spec: JSON = tpl.get("spec") or {}
    labels = {**(tmd.get("labels") or {}), POD_NAME_LABEL: name,
              POD_INDEX_LABEL: str(ordinal), revisions.HASH_LABEL: revision}
    pod_md: JSON = {"name": name, "namespace": md["namespace"], "labels": labels,
                    "ownerReferences": [owner_reference(sts)]}
    if tmd.get("annotations"):
        pod_md["annotations"] = tmd["annotations"]
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    claims = {t.get("metadata", {}).get("name", ""): claim_name(
        t.get("metadata", {}).get("name", ""), md["name"], ordinal)
        for t in spec.get("volumeClaimTemplates") or ()}
    if claims:
        volumes = [v for v in pod_spec.get("volumes") or () if v.get("name") not in claims]
        volumes += [{"name": vol, "persistentVolumeClaim": {"claimName": claim}}
                    for vol, claim in claims.items()]
        pod_spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": pod_spec}


# -- the plan ---------------------------------------------------------------


def revision_of(pod: JSON) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(revisions.HASH_LABEL, ""))


def _healthy(pod: JSON) -> bool:
    return podstate.is_running_and_ready(pod) and not podstate.is_terminating(pod)


def compute_status(sts: JSON, pods: Iterable[JSON], *, current_revision: str,
                   update_revision: str, now: datetime) -> JSON:
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    status: JSON = {"observedGeneration": (sts.get("metadata") or {}).get("generation", 0),
                    "replicas": 0, "readyReplicas": 0, "availableReplicas": 0,
                    "currentReplicas": 0, "updatedReplicas": 0,
                    "currentRevision": current_revision, "updateRevision": update_revision,
                    "collisionCount": int((sts.get("status") or {}).get("collisionCount") or 0)}
    for pod in pods:
        status["replicas"] += 1
        if podstate.is_running_and_ready(pod):
            status["readyReplicas"] += 1
            if podstate.is_available(pod, min_ready, now):
                status["availableReplicas"] += 1
        if podstate.is_terminating(pod):
            continue
        rev = revision_of(pod)
        if rev == current_revision:
            status["currentReplicas"] += 1
        if rev == update_revision:
            status["updatedReplicas"] += 1
    rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
    if rolling and status["updatedReplicas"] == status["replicas"] == status["readyReplicas"]:
        status["currentRevision"] = update_revision
        status["currentReplicas"] = status["updatedReplicas"]
    return status


def plan(sts: JSON, pods: Iterable[JSON], claims: set[str], *, current_revision: str,
         update_revision: str, current_template: JSON, now: datetime) -> Plan:
    """What ``sts`` needs next, given the pods it controls, the names of the
    claims that exist in its namespace, and its two revisions."""
    md, spec = sts["metadata"], sts.get("spec") or {}
    name = md["name"]
    pods = list(pods)
    out = Plan(status=compute_status(sts, pods, current_revision=current_revision,
                                     update_revision=update_revision, now=now))
    if md.get("deletionTimestamp"):
        return out
    replicas = int(spec.get("replicas", 1) or 0)
    start = int((spec.get("ordinals") or {}).get("start") or 0)
    ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0) if rolling else 0
    by_ordinal: dict[int, JSON] = {}
    for pod in pods:
        ordinal = ordinal_of(name, pod["metadata"]["name"])
        if ordinal is not None:
            by_ordinal[ordinal] = pod
    wanted = range(start, start + replicas)
    condemned = sorted((o for o in by_ordinal if o not in wanted), reverse=True)
    acts = out.actions

    def missing_claims(ordinal: int) -> list[Action]:
        return [CreateClaim(c) for c in build_claims(sts, ordinal)
                if c["metadata"]["name"] not in claims]

    def new_pod(ordinal: int) -> JSON:
        if rolling and ordinal - start < partition:
            return build_pod(sts, current_template, ordinal, current_revision)
        return build_pod(sts, spec.get("template") or {}, ordinal, update_revision)

    # 1. every wanted ordinal exists (in order, each waiting for the last, if ordered)
    for ordinal in wanted:
        pod = by_ordinal.get(ordinal)
        if pod is not None and podstate.is_finished(pod) and not podstate.is_terminating(pod):
            acts.append(DeletePod(pod["metadata"]["name"], pod["metadata"]["uid"]))
            if ordered:
                return out
            continue
        if pod is None:
            acts.extend(missing_claims(ordinal))
            acts.append(CreatePod(new_pod(ordinal)))
            if ordered:
                return out
            continue
        acts.extend(missing_claims(ordinal))
        if ordered and not _healthy(pod):
            return out
    # claims of ordinals scaled away go once their pod has (whenScaled: Delete)
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    if retention.get("whenScaled") == "Delete":
        for tpl in spec.get("volumeClaimTemplates") or ():
            prefix = f"{(tpl.get('metadata') or {}).get('name', '')}-"
            for claim in sorted(claims):
                ordinal = ordinal_of(name, claim[len(prefix):]) if claim.startswith(prefix) \
                    else None
                if ordinal is not None and ordinal not in wanted and ordinal not in by_ordinal:
                    acts.append(DeleteClaim(claim))
    # 2. condemned ordinals go, highest first (one at a time, if ordered)
    unhealthy = [o for o in sorted(condemned) if not _healthy(by_ordinal[o])]
    for ordinal in condemned:
        pod = by_ordinal[ordinal]
        if podstate.is_terminating(pod):
            if ordered:
                return out
            continue
        if ordered and not _healthy(pod) and ordinal != unhealthy[0]:
            return out
        acts.append(DeletePod(pod["metadata"]["name"], pod["metadata"]["uid"]))
        if ordered:
            return out
    # 3. rolling update, highest ordinal first, down to the partition
    if not rolling or any(not isinstance(a, DeleteClaim) for a in acts):
        return out
    for ordinal in sorted((o for o in wanted if o - start >= partition), reverse=True):
        pod = by_ordinal.get(ordinal)
        if pod is None:
            return out
        if revision_of(pod) != update_revision and not podstate.is_terminating(pod):
            acts.append(DeletePod(pod["metadata"]["name"], pod["metadata"]["uid"]))
            return out
        if not _healthy(pod):
            return out
    return out


# -- the shell --------------------------------------------------------------

STATUS_FIELDS = ("observedGeneration", "replicas", "readyReplicas", "availableReplicas",
                 "currentReplicas", "updatedReplicas", "currentRevision", "updateRevision",
                 "collisionCount")


class StatefulSetController:
    """Watches StatefulSets and their pods; reconciles one set per key."""

    def __init__(self, client: Client, *, workers: int = 2, backoff: Backoff = DEFAULT_BACKOFF,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self.controller: Controller[Key] = Controller(
            "statefulset", self.reconcile, workers=workers, backoff=backoff)
        self.events = EventRecorder(client, "statefulset-controller")
        add = self.controller.queue.add
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.sets = self.informers.get("apps/v1", "StatefulSet")
        self.sets.add_handler(podstate.enqueue_self(add))
        # the shared pod informer; only pods with a StatefulSet's pod-name
        # label are looked at
        self.pods = self.informers.get("v1", "Pod")
        self.pods.add_handler(filtered(has_label(POD_NAME_LABEL),
                                       podstate.enqueue_controller("StatefulSet", add)))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="statefulset-informers")
            group.create_task(self.events.run(), name="statefulset-events")
            group.create_task(self.controller.run(), name="statefulset-controller")

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        c = self.client
        try:
            sts = await c.get("apps/v1", "StatefulSet", name, namespace=namespace)
        except NotFoundError:
            return None
        sts.setdefault("apiVersion", "apps/v1")
        sts.setdefault("kind", "StatefulSet")
        spec = sts.get("spec") or {}
        pods = await controlled_pods(c, sts, spec.get("selector"))
        revs = await history.load(c, sts)
        template = spec.get("template") or {}
        update_rev = await history.ensure(c, sts, template, revs)
        current_rev = (sts.get("status") or {}).get("currentRevision") or update_rev
        if current_rev not in revs:
            current_rev = update_rev
        current_template = revisions.template_of(revs[current_rev]) if current_rev in revs \
            else None
        claims: set[str] = set()
        if spec.get("volumeClaimTemplates"):
            listed = await c.list("v1", "PersistentVolumeClaim", namespace=namespace)
            claims = {item["metadata"]["name"] for item in listed.get("items") or []}
        now = self._clock()
        result = plan(sts, pods, claims, current_revision=current_rev,
                      update_revision=update_rev, current_template=current_template or template,
                      now=now)
        for action in result.actions:
            await self._apply(action, sts)
        await self._write_status(sts, result.status)
        await history.prune(c, sts, revs,
                            in_use={current_rev, update_rev, *(revision_of(p) for p in pods)})
        min_ready = int(spec.get("minReadySeconds") or 0)
        if min_ready and result.status["availableReplicas"] < result.status["readyReplicas"]:
            return Result(requeue_after=1.0)
        return None

    async def _apply(self, action: Action, sts: JSON) -> None:
        c = self.client
        namespace, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        ref = reference(sts)
        if isinstance(action, CreateClaim):
            claim = action.claim["metadata"]["name"]
            try:
                await c.create(action.claim)
            except AlreadyExistsError:
                return
            self.events.record(ref, "Normal", "SuccessfulCreate",
                               f"create Claim {claim} in StatefulSet {name} success")
        elif isinstance(action, DeleteClaim):
            try:
                await c.delete("v1", "PersistentVolumeClaim", action.name, namespace=namespace)
            except NotFoundError:
                return
            self.events.record(ref, "Normal", "SuccessfulDelete",
                               f"delete Claim {action.name} in StatefulSet {name} success")
        elif isinstance(action, CreatePod):
            pod = action.pod["metadata"]["name"]
            try:
                await c.create(action.pod)
            except AlreadyExistsError:
                return  # a pod of the same name still goes away: the next pass looks again
            self.events.record(ref, "Normal", "SuccessfulCreate",
                               f"create Pod {pod} in StatefulSet {name} successful")
        else:
            try:
                await c.delete("v1", "Pod", action.name, namespace=namespace,
                               preconditions={"uid": action.uid})
            except (NotFoundError, ConflictError):
                return
            self.events.record(ref, "Normal", "SuccessfulDelete",
                               f"delete Pod {action.name} in StatefulSet {name} successful")

    async def _write_status(self, sts: JSON, status: JSON) -> None:
        old = sts.get("status") or {}
        if all(old.get(k) == status.get(k) for k in STATUS_FIELDS):
            return
        body = copy.deepcopy(sts)
        body["status"] = {**old, **status}
        try:
            await self.client.update_status(body)
        except ConflictError as exc:
            raise TemporaryError("statefulset changed meanwhile", delay=0.05) from exc
        except NotFoundError:
            pass


__all__ = [
    "CreateClaim",
    "CreatePod",
    "DeleteClaim",
    "DeletePod",
    "Plan",
    "StatefulSetController",
    "build_claims",
    "build_pod",
    "compute_status",
    "ordinal_of",
    "plan",
]
