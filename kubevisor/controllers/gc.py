"""The garbage collector: ownerReferences, cascading deletion, orphaning.

As kube-controller-manager's garbage collector does:

* an object all of whose owners are gone (no object with the owner's uid)
  is deleted, with the propagation its own finalizers ask for (Background
  by default); an object with some owners gone and others present loses
  the references to the gone ones;
* an owner deleted with ``propagationPolicy=Foreground`` (the apiserver
  gives it a deletionTimestamp and the ``foregroundDeletion`` finalizer)
  has its dependents deleted first (Foreground again for those that have
  dependents of their own); once no dependent with ``blockOwnerDeletion``
  is left, the finalizer is removed and the apiserver deletes the owner;
* an owner deleted with ``Orphan`` (finalizer ``orphan``) has its
  reference removed from every dependent, then the finalizer removed.

The dependency graph (:class:`Graph`, uid -> :class:`Node`, owner uid ->
dependent uids) is fed by metadata-only informers over every served
resource that can be listed, watched and deleted (discovery, refreshed
periodically and whenever a CustomResourceDefinition changes), taken from
the controller manager's :class:`~kubevisor.client.SharedInformers` (kube's
metadata informers: shared with whoever else watches metadata only). Decisions
are pure (:func:`plan_dependent`, :func:`plan_owner`); the
:class:`GarbageCollector` shell reads the live object, plans and applies.
Started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kubevisor.client import (
    APIResource,
    Client,
    ClientError,
    ConflictError,
    Informer,
    NotFoundError,
    SharedInformers,
    UnknownResourceError,
    metadata_only,
)
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result

JSON = dict[str, Any]
ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
#: Resources the graph does not watch (as kube: events churn and own nothing).
IGNORED: frozenset[tuple[str, str]] = frozenset({("", "events"), ("events.k8s.io", "events")})

log = logging.getLogger(__name__)


# -- the graph --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    api_version: str
    kind: str
    name: str
    uid: str
    block: bool = False  # blockOwnerDeletion


@dataclass(frozen=True, slots=True)
class Node:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    owners: tuple[Owner, ...] = ()
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    resource_version: str = field(default="", compare=False)

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Node:
        md = obj.get("metadata") or {}
        owners = tuple(
            Owner(api_version=ref.get("apiVersion", ""), kind=ref.get("kind", ""),
                  name=ref.get("name", ""), uid=ref.get("uid", ""),
                  block=bool(ref.get("blockOwnerDeletion")))
            for ref in md.get("ownerReferences") or [] if ref.get("uid"))
        return cls(api_version=obj.get("apiVersion") or "", kind=obj.get("kind") or "",
                   namespace=md.get("namespace") or "", name=md.get("name") or "",
                   uid=md.get("uid") or "", owners=owners,
                   deleting=bool(md.get("deletionTimestamp")),
                   finalizers=tuple(md.get("finalizers") or ()),
                   resource_version=str(md.get("resourceVersion") or ""))

    @property
    def waiting_for_dependents(self) -> bool:
        return self.deleting and FOREGROUND in self.finalizers

    def owner(self, uid: str) -> Owner | None:
        return next((o for o in self.owners if o.uid == uid), None)


class Graph:
    """Every watched object by uid, and who depends on whom."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._dependents: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def upsert(self, node: Node) -> Node | None:
        """Add or replace ``node``; returns the node it replaced."""
        old = self.nodes.get(node.uid)
        if old is not None:
            self._unlink(old)
        self.nodes[node.uid] = node
        for owner in node.owners:
            self._dependents.setdefault(owner.uid, set()).add(node.uid)
        return old

    def remove(self, uid: str) -> Node | None:
        old = self.nodes.pop(uid, None)
        if old is not None:
            self._unlink(old)
        return old

    def _unlink(self, node: Node) -> None:
        for owner in node.owners:
            deps = self._dependents.get(owner.uid)
            if deps is not None:
                deps.discard(node.uid)
                if not deps:
                    del self._dependents[owner.uid]

    def dependents(self, uid: str) -> list[Node]:
        return [self.nodes[d] for d in self._dependents.get(uid, ()) if d in self.nodes]


# -- pure decisions ---------------------------------------------------------

OwnerState = Literal["solid", "dangling", "waiting"]


@dataclass(frozen=True, slots=True)
class Delete:
    policy: Literal["Background", "Foreground", "Orphan"]


@dataclass(frozen=True, slots=True)
class RemoveOwnerRefs:
    uids: frozenset[str]


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    finalizer: str


@dataclass(frozen=True, slots=True)
class Orphan:
    """Remove the owner's reference from each of these dependents."""

    dependents: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Enqueue:
    uids: tuple[str, ...]


Action = Delete | RemoveOwnerRefs | RemoveFinalizer | Orphan | Enqueue


def owner_state(owner_node: Node | None) -> OwnerState:
    if owner_node is None:
        return "dangling"
    return "waiting" if owner_node.waiting_for_dependents else "solid"


def plan_dependent(node: Node, states: Mapping[str, OwnerState], *,
                   has_dependents: bool) -> Action | None:
    """What to do with a (not deleting) object given the state of each owner."""
    if node.deleting or not node.owners:
        return None
    solid = [o.uid for o in node.owners if states.get(o.uid) == "solid"]
    gone = frozenset(o.uid for o in node.owners if states.get(o.uid) in ("dangling", "waiting"))
    waiting = any(states.get(o.uid) == "waiting" for o in node.owners)
    if solid:
        return RemoveOwnerRefs(gone) if gone else None
    if waiting and has_dependents:
        return Delete("Foreground")
    if ORPHAN in node.finalizers:
        return Delete("Orphan")
    if FOREGROUND in node.finalizers:
        return Delete("Foreground")
    return Delete("Background")


def plan_owner(node: Node, dependents: Sequence[Node]) -> list[Action]:
    """What to do for an object being deleted with a GC finalizer."""
    if not node.deleting:
        return []
    if FOREGROUND in node.finalizers:
        blocking = [d for d in dependents if (o := d.owner(node.uid)) is not None and o.block]
        if not blocking:
            return [RemoveFinalizer(FOREGROUND)]
        return [Enqueue(tuple(d.uid for d in dependents if not d.deleting))]
    if ORPHAN in node.finalizers:
        return [Orphan(tuple(dependents)), RemoveFinalizer(ORPHAN)]
    return []


# -- the shell --------------------------------------------------------------


class GarbageCollector:
    """Builds the graph from watches and runs the collector's workers."""

    def __init__(self, client: Client, *, workers: int = 4, backoff: Backoff = DEFAULT_BACKOFF,
                 rediscover_interval: float = 30.0,
                 ignored: frozenset[tuple[str, str]] = IGNORED,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self.graph = Graph()
        self._ignored = ignored
        self._interval = rediscover_interval
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self._informers: dict[tuple[str, str], Informer] = {}
        self._rediscover = asyncio.Event()
        self._absent: set[str] = set()  # uids verified absent (uids never come back)
        self.controller: Controller[str] = Controller(
            "garbage-collector", self.reconcile, workers=workers, backoff=backoff)

    # graph feeding

    def _on_event(self, etype: str, obj: JSON, old: JSON | None) -> None:
        node = Node.from_object(obj)
        if not node.uid:
            return
        add = self.controller.queue.add
        if etype == "DELETED":
            gone = self.graph.remove(node.uid) or node
            if len(self._absent) > 100_000:
                self._absent.clear()
            self._absent.add(node.uid)
            for dep in self.graph.dependents(node.uid):
                add(dep.uid)
            for owner in gone.owners:
                add(owner.uid)
            return
        prev = self.graph.upsert(node)
        if prev is None:
            if node.deleting or self._owners_need_a_look(node):
                add(node.uid)
            return
        if node.owners != prev.owners:
            if self._owners_need_a_look(node):
                add(node.uid)
            for owner in set(prev.owners) - set(node.owners):
                add(owner.uid)
        if (node.deleting, node.finalizers) != (prev.deleting, prev.finalizers):
            add(node.uid)
            if node.waiting_for_dependents != prev.waiting_for_dependents:
                for dep in self.graph.dependents(node.uid):
                    add(dep.uid)

    def _owners_need_a_look(self, node: Node) -> bool:
        """True unless every owner is in the graph and not waiting for its
        dependents (then there is nothing to do; an owner's later deletion
        enqueues its dependents)."""
        for owner in node.owners:
            known = self.graph.nodes.get(owner.uid)
            if known is None or known.waiting_for_dependents:
                return True
        return False

    def _on_crd(self, etype: str, obj: JSON, old: JSON | None) -> None:
        self._rediscover.set()

    @property
    def synced(self) -> bool:
        return bool(self._informers) and all(inf.synced.is_set()
                                             for inf in self._informers.values())

    async def _sync_informers(self) -> None:
        resources = await self.client.discovery.resources(
            refresh=True, verbs=("list", "watch", "delete"))
        wanted: dict[tuple[str, str], APIResource] = {
            (r.group, r.plural): r for r in resources if (r.group, r.plural) not in self._ignored}
        for key in list(self._informers):
            if key not in wanted:
                informer = self._informers.pop(key)
                self._let_go(informer)
                for k in informer.keys():
                    obj = informer.get(k[1], k[0])
                    if obj is not None:
                        self._on_event("DELETED", obj, obj)
        for key, res in wanted.items():
            if key in self._informers:
                continue
            informer = self.informers.get(res.api_version, res.kind, transform=metadata_only)
            informer.add_handler(self._on_event)  # a running one replays its cache first
            if key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                informer.add_handler(self._on_crd)
            self._informers[key] = informer

    def _let_go(self, informer: Informer) -> None:
        informer.remove_handler(self._on_event)
        informer.remove_handler(self._on_crd)
        self.informers.release(informer)

    async def _discovery_loop(self) -> None:
        failures = 0
        while True:
            self._rediscover.clear()
            try:
                await self._sync_informers()
                failures = 0
            except ClientError as exc:
                failures += 1
                log.warning("garbage collector: discovery failed: %s", exc)
            delay = self._interval if not failures else min(0.2 * 2 ** failures, self._interval)
            try:
                await asyncio.wait_for(self._rediscover.wait(), delay)
                await asyncio.sleep(0.2)  # let a burst of CRD changes settle
            except TimeoutError:
                pass

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                if self._own_informers:
                    group.create_task(self.informers.run(), name="gc-informers")
                group.create_task(self._discovery_loop(), name="gc-discovery")
                waited = 0
                while not self.synced:
                    await asyncio.sleep(0.05)
                    waited += 1
                    if waited % 200 == 0:
                        log.warning("garbage collector: waiting for caches of %s", [
                            repr(inf) for inf in self._informers.values()
                            if not inf.synced.is_set()])
                group.create_task(self.controller.run(), name="gc-workers")
        finally:
            for informer in self._informers.values():
                self._let_go(informer)
            self._informers.clear()

    # reconcile

    async def reconcile(self, uid: str) -> Result | None:
        node = self.graph.nodes.get(uid)
        if node is None:
            return None
        if not node.deleting and not self._owners_need_a_look(node):
            return None  # every owner is known and solid: nothing to do, no API call
        # The graph's view is acted on as is: deletes carry its resourceVersion
        # as a precondition, edits re-read the object, so a stale view only
        # costs a retry.
        live = node
        if live.deleting:
            actions = plan_owner(live, self.graph.dependents(uid))
        else:
            states = {o.uid: await self._owner_state(live, o) for o in live.owners}
            action = plan_dependent(live, states, has_dependents=bool(self.graph.dependents(uid)))
            actions = [action] if action is not None else []
        for action in actions:
            await self._apply(live, action)
        return None

    async def _owner_state(self, dependent: Node, owner: Owner) -> OwnerState:
        known = self.graph.nodes.get(owner.uid)
        if known is not None:
            return owner_state(known)
        if owner.uid in self._absent:
            return "dangling"
        try:
            res = await self.client.resource(owner.api_version, owner.kind)
        except UnknownResourceError as exc:
            raise TemporaryError(f"owner kind unknown: {exc}") from exc
        if res.namespaced and not dependent.namespace:
            return "dangling"  # a cluster-scoped object cannot have a namespaced owner
        try:
            obj = await self.client.get(owner.api_version, owner.kind, owner.name,
                                        namespace=dependent.namespace if res.namespaced else None)
        except NotFoundError:
            self._absent.add(owner.uid)
            return "dangling"
        found = Node.from_object({"apiVersion": owner.api_version, "kind": owner.kind, **obj})
        if found.uid != owner.uid:
            self._absent.add(owner.uid)
            return "dangling"
        return owner_state(found)

    async def _apply(self, node: Node, action: Action) -> None:
        if isinstance(action, Delete):
            log.info("garbage collector: deleting %s %s/%s (%s)", node.kind, node.namespace,
                     node.name, action.policy)
            pre = {"uid": node.uid}
            if node.resource_version:
                pre["resourceVersion"] = node.resource_version
            try:
                await self.client.delete(node.api_version, node.kind, node.name,
                                         namespace=node.namespace or None,
                                         propagation_policy=action.policy,
                                         preconditions=pre)
            except (NotFoundError, UnknownResourceError):
                pass  # already gone
            except ConflictError as exc:
                raise TemporaryError(f"{node.kind} {node.name} changed meanwhile") from exc
        elif isinstance(action, RemoveOwnerRefs):
            await self._edit(node, lambda md: _drop_owner_refs(md, action.uids))
        elif isinstance(action, RemoveFinalizer):
            await self._edit(node, lambda md: _drop_finalizer(md, action.finalizer))
        elif isinstance(action, Orphan):
            owner_uid = frozenset({node.uid})
            for dep in action.dependents:
                await self._edit(dep, lambda md: _drop_owner_refs(md, owner_uid))
        elif isinstance(action, Enqueue):
            for uid in action.uids:
                self.controller.queue.add(uid)

    async def _edit(self, node: Node, change: Any) -> None:
        """GET fresh, apply ``change(metadata) -> bool`` to a copy, PUT if it changed."""
        try:
            obj = await self.client.get(node.api_version, node.kind, node.name,
                                        namespace=node.namespace or None)
        except NotFoundError:
            return
        if (obj.get("metadata") or {}).get("uid") != node.uid:
            return
        body = copy.deepcopy(obj)
        body.setdefault("apiVersion", node.api_version)
        body.setdefault("kind", node.kind)
        if not change(body.setdefault("metadata", {})):
            return
        try:
            await self.client.update(body)
        except NotFoundError:
            return


def _drop_owner_refs(md: JSON, uids: frozenset[str]) -> bool:
    refs = md.get("ownerReferences") or []
    kept = [r for r in refs if r.get("uid") not in uids]
    if len(kept) == len(refs):
        return False
    if kept:
        md["ownerReferences"] = kept
    else:
        md.pop("ownerReferences", None)
    return True


def _drop_finalizer(md: JSON, finalizer: str) -> bool:
    fins = md.get("finalizers") or []
    if finalizer not in fins:
        return False
    md["finalizers"] = [f for f in fins if f != finalizer]
    return True
