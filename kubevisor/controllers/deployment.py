"""The Deployment controller (kube-controller-manager's deployment controller).

A Deployment owns one ReplicaSet per pod template it has had, named
``<deployment>-<pod-template-hash>`` (the hash label is added to that
ReplicaSet's selector, template and so its pods). Each sync does one
step of kube's algorithm: find or create the new ReplicaSet (revision =
highest old revision + 1; a rollback to an old template makes that old
ReplicaSet the new one and bumps its revision), then, for RollingUpdate,
scale the new one up within maxSurge and the old ones down within
maxUnavailable; for Recreate, scale the old ones to zero, wait until
their pods are gone, then scale the new one up. A change of
``spec.replicas`` during a rollout is shared proportionally; a paused
Deployment is only scaled. Old ReplicaSets beyond ``revisionHistoryLimit``
are deleted once the rollout completes. The status (replicas,
updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas,
observedGeneration, Available and Progressing conditions with kube's
reasons and messages, ProgressDeadlineExceeded after
``progressDeadlineSeconds`` without progress) is what ``kubectl rollout
status`` reads; ``kubectl rollout undo/history`` read the ReplicaSets'
revision annotations. Pure part: :func:`plan` (a snapshot in, ordered
actions and the new status out); the shell: :class:`DeploymentController`,
started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubevisor.api.meta import controller_of, owner_reference
from kubevisor.api.selectors import SelectorError, label_selector_from_spec
from kubevisor.client import (
    AlreadyExistsError,
    ApiError,
    Client,
    ConflictError,
    NotFoundError,
    SharedInformers,
)
from kubevisor.controllers import ownership
from kubevisor.controllers import rollout as r
from kubevisor.controllers.conditions import find_condition
from kubevisor.controllers.errors import PermanentError, TemporaryError
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.podstate import phase
from kubevisor.controllers.podtemplate import (
    equal_ignore_hash,
    selector_with_hash,
    template_hash,
    with_hash_label,
)
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
#: How often a Recreate rollout looks again while old pods are terminating.
OLD_PODS_POLL = 1.0

log = logging.getLogger(__name__)


# -- the plan -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateReplicaSet:
    body: JSON


@dataclass(frozen=True, slots=True)
class UpdateReplicaSet:
    body: JSON  # the whole object, carrying the resourceVersion it was read at


@dataclass(frozen=True, slots=True)
class DeleteReplicaSet:
    rs: JSON


Action = CreateReplicaSet | UpdateReplicaSet | DeleteReplicaSet


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    annotations: dict[str, str] | None = None  # the Deployment's, when they change
    status: JSON | None = None  # the Deployment's, when it changes
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    requeue_after: float | None = None


class _Sync:
    """One sync of one Deployment over a working copy of its ReplicaSets."""

    def __init__(self, d: JSON, rss: Sequence[JSON], now: datetime) -> None:
        self.d = copy.deepcopy(d)
        self.d.setdefault("status", {})
        self.now = now
        self.stamp = rfc3339(now)
        self.rss: dict[str, JSON] = {rs["metadata"]["name"]: rs for rs in rss}
        self.changes: dict[str, Action] = {}
        self.events: list[tuple[str, str, str]] = []
        self.requeue_after: float | None = None

    # working set

    def _put(self, rs: JSON) -> None:
        name = rs["metadata"]["name"]
        self.rss[name] = rs
        current = self.changes.get(name)
        if isinstance(current, CreateReplicaSet):
            self.changes[name] = CreateReplicaSet(rs)
        else:
            self.changes[name] = UpdateReplicaSet(rs)

    def _now(self, rs: JSON | None) -> JSON | None:
        return None if rs is None else self.rss.get(rs["metadata"]["name"], rs)

    def _conditions(self) -> list[JSON]:
        return list(self.d["status"].get("conditions") or [])

    def _set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        self.d["status"]["conditions"] = r.set_deployment_condition(
            self._conditions(), type=type_, status=status, reason=reason, message=message,
            now=self.stamp)

    def _set_revision(self, revision: str) -> None:
        md = self.d.setdefault("metadata", {})
        ann = dict(md.get("annotations") or {})
        if ann.get(r.REVISION) != revision:
            ann[r.REVISION] = revision
            md["annotations"] = ann

    # kube's getAllReplicaSetsAndSyncRevision

    def all_replicasets(self, *, create: bool) -> tuple[JSON | None, list[JSON]]:
        rss = list(self.rss.values())
        new = r.find_new(self.d, rss)
        olds = r.find_old(rss, new)
        new_revision = r.max_revision(olds) + 1
        if new is not None:
            updated = copy.deepcopy(new)
            changed = r.set_new_rs_annotations(self.d, updated, new_revision, exists=True)
            min_ready = int((self.d["spec"]).get("minReadySeconds") or 0)
            if int(updated["spec"].get("minReadySeconds") or 0) != min_ready:
                updated["spec"]["minReadySeconds"] = min_ready
                changed = True
            if changed:
                self._put(updated)
            self._set_revision(r.annotations(updated).get(r.REVISION, ""))
            if r.has_progress_deadline(self.d) and \
                    find_condition(self._conditions(), r.PROGRESSING) is None:
                self._set_condition(r.PROGRESSING, "True", r.FOUND_NEW_RS,
                                    f'Found new replica set "{updated["metadata"]["name"]}"')
            return updated, olds
        if not create:
            return None, olds
        body = self._new_replicaset(olds, new_revision)
        name = body["metadata"]["name"]
        self.rss[name] = body
        self.changes[name] = CreateReplicaSet(body)
        replicas = r.rs_replicas(body)
        if replicas > 0:
            self.events.append(("Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {name} from 0 to {replicas}"))
        self._set_revision(str(new_revision))
        if r.has_progress_deadline(self.d):
            self._set_condition(r.PROGRESSING, "True", r.NEW_RS_CREATED,
                                f'Created new replica set "{name}"')
        return body, olds

    def _new_replicaset(self, olds: list[JSON], new_revision: int) -> JSON:
        d = self.d
        spec = d["spec"]
        hash_ = template_hash(spec.get("template") or {},
                              collision_count=d["status"].get("collisionCount"))
        template = with_hash_label(spec.get("template") or {}, hash_)
        body: JSON = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{hash_}",
                         "namespace": d["metadata"]["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [owner_reference(d)]},
            "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                     "selector": selector_with_hash(spec.get("selector"), hash_),
                     "template": template},
        }
        body["spec"]["replicas"] = r.new_rs_new_replicas(d, [*olds, body], body)
        r.set_new_rs_annotations(d, body, new_revision, exists=False)
        return body

    # scaling

    def scale(self, rs: JSON, size: int, *, annotations_too: bool = False) -> bool:
        """Set ``rs``'s size (and replica annotations); True if the size changed."""
        rs = self._now(rs) or rs
        size_changes = r.rs_replicas(rs) != size
        if not size_changes and not annotations_too:
            return False
        want_desired = r.desired(self.d)
        want_max = want_desired + r.max_surge(self.d)
        if not size_changes and not r.replicas_annotations_need_update(rs, want_desired,
                                                                         want_max):
            return False
        updated = copy.deepcopy(rs)
        old = r.rs_replicas(rs)
        updated["spec"]["replicas"] = size
        r.set_replicas_annotations(updated, want_desired, want_max)
        self._put(updated)
        if size_changes:
            direction = "up" if size > old else "down"
            self.events.append(("Normal", "ScalingReplicaSet",
                                f"Scaled {direction} replica set {rs['metadata']['name']} "
                                f"from {old} to {size}"))
        return size_changes

    def _scale_to(self, rs: JSON, size: int) -> bool:
        return self.scale(rs, size, annotations_too=True)

    def _all(self, new: JSON | None, olds: list[JSON]) -> list[JSON | None]:
        return [self._now(rs) for rs in olds] + [self._now(new)]

    # strategies

    def rolling(self) -> JSON:
        new, olds = self.all_replicasets(create=True)
        assert new is not None
        if self._reconcile_new(new, olds):
            return self.rollout_status(new, olds)
        if self._reconcile_olds(new, olds):
            return self.rollout_status(new, olds)
        if r.complete(self.d, self.d["status"]):
            self.cleanup(olds)
        return self.rollout_status(new, olds)

    def _reconcile_new(self, new: JSON, olds: list[JSON]) -> bool:
        new = self._now(new) or new
        want = r.desired(self.d)
        if r.rs_replicas(new) == want:
            return False
        if r.rs_replicas(new) > want:
            return self._scale_to(new, want)
        size = r.new_rs_new_replicas(self.d, self._all(new, olds), new)
        return self._scale_to(new, size)

    def _reconcile_olds(self, new: JSON, olds: list[JSON]) -> bool:
        new = self._now(new) or new
        live_olds = r.active(self._now(rs) for rs in olds)
        if r.spec_sum(live_olds) == 0:
            return False
        all_count = r.spec_sum(self._all(new, olds))
        min_available = r.desired(self.d) - r.max_unavailable(self.d)
        new_unavailable = r.rs_replicas(new) - r.rs_status(new, "availableReplicas")
        budget = all_count - min_available - new_unavailable
        if budget <= 0:
            return False
        cleaned = self._cleanup_unhealthy(live_olds, budget)
        scaled = self._scale_down_olds(new, olds)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, olds: list[JSON], budget: int) -> int:
        total = 0
        for rs in r.by_creation(olds):
            rs = self._now(rs) or rs
            if total >= budget:
                break
            size, available = r.rs_replicas(rs), r.rs_status(rs, "availableReplicas")
            if size == 0 or size <= available:
                continue
            down = min(budget - total, size - available)
            self._scale_to(rs, size - down)
            total += down
        return total

    def _scale_down_olds(self, new: JSON, olds: list[JSON]) -> int:
        min_available = r.desired(self.d) - r.max_unavailable(self.d)
        available = r.available_lower_bound(self._all(new, olds))
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in r.by_creation(self._now(o) or o for o in olds):
            if total >= budget:
                break
            size = r.rs_replicas(rs)
            if size == 0:
                continue
            down = min(size, budget - total)
            self._scale_to(rs, size - down)
            total += down
        return total

    def recreate(self, pods: Sequence[JSON]) -> JSON:
        new, olds = self.all_replicasets(create=False)
        scaled = False
        for rs in r.active(olds):
            scaled = self._scale_to(rs, 0) or scaled
        if scaled:
            return self.rollout_status(new, olds)
        if self._old_pods_running(new, olds, pods):
            self.requeue_after = OLD_PODS_POLL
            return self.rollout_status(new, olds)
        if new is None:
            new, olds = self.all_replicasets(create=True)
            assert new is not None
        self._scale_to(new, r.desired(self.d))
        if r.complete(self.d, self.d["status"]):
            self.cleanup(olds)
        return self.rollout_status(new, olds)

    def _old_pods_running(self, new: JSON | None, olds: list[JSON],
                          pods: Sequence[JSON]) -> bool:
        if r.status_sum(olds, "replicas") > 0:
            return True
        old_uids = {rs["metadata"].get("uid") for rs in olds}
        for pod in pods:
            ref = controller_of(pod)
            if ref is None or ref.get("uid") not in old_uids:
                continue
            if phase(pod) not in ("Failed", "Succeeded"):
                return True
        return False

    def is_scaling_event(self) -> bool:
        new, olds = self.all_replicasets(create=False)
        for rs in r.active(self._all(new, olds)):
            wanted = r.desired_annotation(rs)
            if wanted is not None and wanted != r.desired(self.d):
                return True
        return False

    def sync(self) -> JSON:
        """kube's sync: scale (proportionally mid-rollout), no rollout step."""
        new, olds = self.all_replicasets(create=False)
        self._scale(new, olds)
        if self.d["spec"].get("paused"):
            self.cleanup(olds)
        new = self._now(new)
        return r.calculate_status(self.d, self._all(new, olds), new, now=self.stamp)

    def _scale(self, new: JSON | None, olds: list[JSON]) -> None:
        olds = [self._now(o) or o for o in olds]
        new = self._now(new)
        target = r.find_active_or_latest(new, olds)
        if target is not None:
            if r.rs_replicas(target) != r.desired(self.d):
                self._scale_to(target, r.desired(self.d))
            return
        if r.is_saturated(self.d, new):
            for old in r.active(olds):
                self._scale_to(old, 0)
            return
        if r.strategy_type(self.d) != "RollingUpdate":
            return
        live = r.active([*olds, new])
        for name, size in r.proportional_sizes(self.d, live).items():
            self.scale(self.rss[name], size, annotations_too=True)

    def cleanup(self, olds: list[JSON]) -> None:
        for rs in r.history_to_delete(self.d, [self._now(o) or o for o in olds]):
            self.changes[rs["metadata"]["name"]] = DeleteReplicaSet(rs)

    def check_paused(self) -> None:
        if not r.has_progress_deadline(self.d):
            return
        cond = find_condition(self._conditions(), r.PROGRESSING)
        paused_shown = cond is not None and cond.get("reason") == r.PAUSED
        if self.d["spec"].get("paused") and not paused_shown:
            self._set_condition(r.PROGRESSING, "Unknown", r.PAUSED, "Deployment is paused")
        elif not self.d["spec"].get("paused") and paused_shown:
            self._set_condition(r.PROGRESSING, "Unknown", r.RESUMED, "Deployment is resumed")

    def rollout_status(self, new: JSON | None, olds: list[JSON]) -> JSON:
        new = self._now(new)
        status = r.rollout_status(self.d, self._all(new, olds), new, now=self.now)
        wait = r.seconds_to_deadline(self.d, status, self.now)
        if wait is not None:
            self.requeue_after = wait if self.requeue_after is None else \
                min(wait, self.requeue_after)
        return status


def plan(d: JSON, replicasets: Sequence[JSON], *, pods: Sequence[JSON] = (),
         now: datetime) -> Plan:
    """One sync of Deployment ``d`` over the ReplicaSets it controls (and, for
    Recreate, the pods its selector matches)."""
    s = _Sync(d, replicasets, now)
    spec = s.d.get("spec") or {}
    original = d.get("status") or {}
    if spec.get("selector") == {}:
        status = copy.deepcopy(original)
        status["observedGeneration"] = int(d["metadata"].get("generation") or 0)
        s.events.append(("Warning", "SelectingAll", "This deployment is selecting all pods. "
                         "A non-empty selector is required."))
    elif d["metadata"].get("deletionTimestamp"):
        new, olds = s.all_replicasets(create=False)
        status = r.calculate_status(s.d, s._all(new, olds), s._now(new), now=s.stamp)
    else:
        s.check_paused()
        if spec.get("paused") or s.is_scaling_event():
            status = s.sync()
        elif r.strategy_type(s.d) == "Recreate":
            status = s.recreate(pods)
        else:
            status = s.rolling()
    out = Plan(actions=list(s.changes.values()), events=s.events,
               requeue_after=s.requeue_after)
    if r.annotations(s.d) != r.annotations(d):
        out.annotations = r.annotations(s.d)
    if status != original:
        out.status = status
    return out


# -- the shell ------------------------------------------------------------------


class DeploymentController:
    """Watches Deployments and ReplicaSets; rolls Deployments out."""

    def __init__(self, client: Client, *, workers: int = 4, backoff: Backoff = DEFAULT_BACKOFF,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.deployments = self.informers.get("apps/v1", "Deployment")
        self.replicasets = self.informers.get("apps/v1", "ReplicaSet")
        self.deployments.add_handler(self._on_deployment)
        self.replicasets.add_handler(self._on_replicaset)
        self.events = EventRecorder(client, "deployment-controller")
        self.controller: Controller[Key] = Controller(
            "deployment", self.reconcile, workers=workers, backoff=backoff)

    def _on_deployment(self, etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj.get("metadata") or {}
        self.controller.queue.add((md.get("namespace") or "", md.get("name") or ""))

    def _owner_key(self, rs: JSON) -> Key | None:
        ref = controller_of(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return None
        return ((rs.get("metadata") or {}).get("namespace") or "", ref.get("name") or "")

    def _on_replicaset(self, etype: str, obj: JSON, old: JSON | None) -> None:
        add = self.controller.queue.add
        keys = {self._owner_key(obj)}
        if old is not None:
            keys.add(self._owner_key(old))
        keys.discard(None)
        for key in keys:
            assert key is not None
            add(key)
        if not keys and etype != "DELETED":
            md = obj.get("metadata") or {}
            ns = md.get("namespace") or ""
            for d in self.deployments.items():
                dmd = d.get("metadata") or {}
                if dmd.get("namespace") != ns:
                    continue
                try:
                    selector = label_selector_from_spec((d.get("spec") or {}).get("selector"))
                except SelectorError:
                    continue
                if not selector.empty and selector.matches(md.get("labels") or {}):
                    add((ns, dmd.get("name") or ""))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="deployment-informers")
            group.create_task(self.events.run(), name="deployment-events")
            await self.informers.wait_synced(self.deployments, self.replicasets)
            group.create_task(self.controller.run(), name="deployment-controller")

    async def reconcile(self, key: Key) -> Result | None:
        ns, name = key
        cached = self.deployments.get(name, ns)
        if cached is None:
            return None
        d = copy.deepcopy(cached)
        try:
            selector = label_selector_from_spec((d.get("spec") or {}).get("selector"))
        except SelectorError as exc:
            raise PermanentError(f"deployment {ns}/{name}: bad selector: {exc}") from exc
        in_ns = [rs for rs in self.replicasets.items()
                 if (rs.get("metadata") or {}).get("namespace") == ns]
        claimed = ownership.claim(d, selector, in_ns)
        owned = list(claimed.owned)
        if not d["metadata"].get("deletionTimestamp"):
            for rs in claimed.adopt:
                adopted = await ownership.adopt(self.client, d, rs)
                if adopted is not None:
                    owned.append(adopted)
            for rs in claimed.release:
                await ownership.release(self.client, d, rs)
        pods: list[JSON] = []
        if r.strategy_type(d) == "Recreate" and not selector.empty:
            pods = (await self.client.list("v1", "Pod", namespace=ns,
                                           label_selector=str(selector)))["items"]
        todo = plan(d, owned, pods=pods, now=self._clock())
        await self._apply(d, todo)
        return Result(requeue_after=todo.requeue_after) if todo.requeue_after is not None else None

    async def _apply(self, d: JSON, todo: Plan) -> None:
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        for action in todo.actions:
            if isinstance(action, CreateReplicaSet):
                await self._create(d, action.body)
            elif isinstance(action, UpdateReplicaSet):
                try:
                    await self.client.update(action.body)
                except ConflictError as exc:
                    raise TemporaryError(
                        f"replicaset {ns}/{action.body['metadata']['name']} changed") from exc
                except NotFoundError as exc:
                    raise TemporaryError("replicaset vanished") from exc
            else:
                md = action.rs["metadata"]
                try:
                    await self.client.delete("apps/v1", "ReplicaSet", md["name"], namespace=ns,
                                             preconditions={"uid": md["uid"]})
                except (NotFoundError, ConflictError):
                    pass
        for type_, reason, message in todo.events:
            self.events.record(reference(d), type_, reason, message)
        current = d
        try:
            if todo.annotations is not None:
                body = copy.deepcopy(d)
                body["metadata"]["annotations"] = todo.annotations
                current = await self.client.update(body)
            if todo.status is not None:
                body = copy.deepcopy(current)
                body["status"] = todo.status
                await self.client.update_status(body)
        except ConflictError as exc:
            raise TemporaryError(f"deployment {ns}/{name} changed meanwhile") from exc
        except NotFoundError:
            return

    async def _create(self, d: JSON, body: JSON) -> None:
        ns, rs_name = d["metadata"]["namespace"], body["metadata"]["name"]
        try:
            await self.client.create(body)
            return
        except AlreadyExistsError:
            pass
        except ApiError as exc:
            status = copy.deepcopy(d.get("status") or {})
            status["conditions"] = r.set_deployment_condition(
                status.get("conditions"), type=r.PROGRESSING, status="False",
                reason=r.FAILED_RS_CREATE,
                message=f'Failed to create new replica set "{rs_name}": {exc}',
                now=rfc3339(self._clock()))
            await self._write_status(d, status)
            raise TemporaryError(f"creating replicaset {ns}/{rs_name}: {exc}") from exc
        try:
            existing = await self.client.get("apps/v1", "ReplicaSet", rs_name, namespace=ns)
        except NotFoundError as exc:
            raise TemporaryError(f"replicaset {ns}/{rs_name} vanished") from exc
        ref = controller_of(existing)
        ours = ref is not None and ref.get("uid") == d["metadata"]["uid"]
        if ours and equal_ignore_hash(existing["spec"].get("template"),
                                      d["spec"].get("template")):
            raise TemporaryError(f"replicaset {ns}/{rs_name} not in the cache yet", delay=0.05)
        status = copy.deepcopy(d.get("status") or {})
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        await self._write_status(d, status)
        raise TemporaryError(f"hash collision with replicaset {ns}/{rs_name}")

    async def _write_status(self, d: JSON, status: JSON) -> None:
        body = copy.deepcopy(d)
        body["status"] = status
        try:
            await self.client.update_status(body)
        except (ConflictError, NotFoundError) as exc:
            raise TemporaryError(f"deployment {d['metadata']['name']} changed") from exc


__all__ = [
    "CreateReplicaSet",
    "DeleteReplicaSet",
    "DeploymentController",
    "Plan",
    "UpdateReplicaSet",
    "plan",
]
