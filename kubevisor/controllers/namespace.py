"""The namespace lifecycle controller (kube-controller-manager's namespace
controller).

Deleting a Namespace makes the apiserver set its deletionTimestamp and
phase Terminating, and keep it while ``spec.finalizers`` holds
``kubernetes``. This controller then deletes every namespaced object in
it, across all served resources (discovery, so custom resources too),
reports progress in the same status conditions as Kubernetes
(NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsingFailure,
NamespaceDeletionContentFailure, NamespaceContentRemaining,
NamespaceFinalizersRemaining), and once nothing is left removes the
``kubernetes`` finalizer through ``PUT namespaces/<name>/finalize``, after
which the apiserver deletes the namespace. Pure parts: :func:`plan`,
:func:`deletion_conditions`; the shell: :class:`NamespaceController`,
started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kubevisor.client import (
    APIResource,
    Client,
    ClientError,
    MethodNotAllowedError,
    NotFoundError,
    SharedInformers,
    metadata_only,
)
from kubevisor.controllers.conditions import set_condition
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.queue import DEFAULT_BACKOFF, Backoff
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
FINALIZER = "kubernetes"

DISCOVERY_FAILURE = "NamespaceDeletionDiscoveryFailure"
GV_PARSING_FAILURE = "NamespaceDeletionGroupVersionParsingFailure"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
#: type -> (reason, message) when all is well (status False), as Kubernetes words them.
OK_CONDITIONS: dict[str, tuple[str, str]] = {
    DISCOVERY_FAILURE: ("ResourcesDiscovered", "All resources successfully discovered"),
    GV_PARSING_FAILURE: ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    CONTENT_FAILURE: ("ContentDeleted",
                      "All content successfully deleted, may be waiting on finalization"),
    CONTENT_REMAINING: ("ContentRemoved", "All content successfully removed"),
    FINALIZERS_REMAINING: ("ContentRemoved", "All content successfully removed"),
}


@dataclass(slots=True)
class ContentReport:
    """What one pass over a namespace's content found."""

    discovery_failures: dict[str, str] = field(default_factory=dict)  # group/version -> error
    errors: list[str] = field(default_factory=list)  # one per resource that failed
    remaining: dict[str, int] = field(default_factory=dict)  # "pods." -> count
    finalizers: dict[str, int] = field(default_factory=dict)  # finalizer -> count

    @property
    def clean(self) -> bool:
        return not (self.discovery_failures or self.errors or self.remaining)


Step = Literal["ignore", "mark-terminating", "delete-content", "finalized"]


def plan(ns: JSON) -> Step:
    """What a namespace needs next, from the namespace alone."""
    md = ns.get("metadata") or {}
    if not md.get("deletionTimestamp"):
        return "ignore"
    if (ns.get("status") or {}).get("phase") != "Terminating":
        return "mark-terminating"
    if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
        return "finalized"
    return "delete-content"


def deletion_conditions(conditions: list[JSON] | None, report: ContentReport,
                        now: str) -> tuple[list[JSON], bool]:
    """The namespace's conditions after ``report``; (conditions, changed)."""
    wanted: dict[str, tuple[str, str, str]] = {
        t: ("False", *ok) for t, ok in OK_CONDITIONS.items()}
    if report.discovery_failures:
        failing = ", ".join(f"{gv}: {err}" for gv, err in sorted(report.discovery_failures.items()))
        wanted[DISCOVERY_FAILURE] = (
            "True", "DiscoveryFailed",
            f"Discovery failed for some groups, {len(report.discovery_failures)} failing: "
            f"{failing}")
    if report.errors:
        wanted[CONTENT_FAILURE] = (
            "True", "ContentDeletionFailed",
            f"Failed to delete all resource types, {len(report.errors)} remaining: "
            f"{', '.join(sorted(report.errors))}")
    remaining = sorted(f"{gr} has {n} resource instances"
                       for gr, n in report.remaining.items() if n)
    if remaining:
        wanted[CONTENT_REMAINING] = ("True", "SomeResourcesRemain",
                                     f"Some resources are remaining: {', '.join(remaining)}")
    fins = sorted(f"{f} in {n} resource instances" for f, n in report.finalizers.items() if n)
    if fins:
        wanted[FINALIZERS_REMAINING] = ("True", "SomeFinalizerRemain",
                                        f"Some finalizers are remaining: {', '.join(fins)}")
    out = list(conditions or [])
    changed = False
    for type_, (status, reason, message) in wanted.items():
        out, one = set_condition(out, type=type_, status=status, reason=reason,
                                 message=message, now=now)
        changed = changed or one
    return out, changed


def without_finalizer(ns: JSON) -> JSON:
    """The body for ``PUT namespaces/<name>/finalize``: ns minus our finalizer."""
    body = copy.deepcopy(ns)
    spec = body.setdefault("spec", {})
    spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != FINALIZER]
    return body


class NamespaceController:
    """Watches Namespaces; reconciles the ones being deleted."""

    def __init__(self, client: Client, *, workers: int = 2, backoff: Backoff = DEFAULT_BACKOFF,
                 clock: Callable[[], datetime] = utcnow, concurrency: int = 8,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self._concurrency = concurrency
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        # metadata is all the handler reads (the reconciler GETs the namespace)
        self.informer = self.informers.get("v1", "Namespace", transform=metadata_only)
        self.informer.add_handler(self._on_event)
        self.controller: Controller[str] = Controller(
            "namespace", self.reconcile, workers=workers, backoff=backoff)

    def _on_event(self, etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj.get("metadata") or {}
        if etype != "DELETED" and md.get("deletionTimestamp"):
            self.controller.queue.add(md["name"])

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="namespace-informers")
            group.create_task(self.controller.run(), name="namespace-controller")

    async def reconcile(self, name: str) -> Result | None:
        try:
            ns = await self.client.get("v1", "Namespace", name)
        except NotFoundError:
            return None
        step = plan(ns)
        if step == "ignore" or step == "finalized":
            return None
        if step == "mark-terminating":
            body = copy.deepcopy(ns)
            body.setdefault("status", {})["phase"] = "Terminating"
            ns = await self.client.update_status(body)
            if plan(ns) != "delete-content":
                return None
        report = await self.delete_content(name)
        conditions = (ns.get("status") or {}).get("conditions")
        new_conditions, changed = deletion_conditions(conditions, report, rfc3339(self._clock()))
        if changed:
            body = copy.deepcopy(ns)
            body.setdefault("status", {})["conditions"] = new_conditions
            ns = await self.client.update_status(body)
        if not report.clean:
            raise TemporaryError(_summary(report))
        try:
            await self.client.update(without_finalizer(ns), subresource="finalize")
        except NotFoundError:
            return None
        return None

    async def delete_content(self, namespace: str) -> ContentReport:
        """Delete everything in ``namespace``; report what is left."""
        report = ContentReport()
        resources = await self.client.discovery.resources(refresh=True, verbs=("list", "delete"))
        report.discovery_failures = dict(self.client.discovery.failed)
        gate = asyncio.Semaphore(self._concurrency)

        async def one(res: APIResource) -> None:
            async with gate:
                try:
                    await self._delete_resource(res, namespace, report)
                except ClientError as exc:
                    report.errors.append(f"{res.group_resource}: {exc}")

        await asyncio.gather(*(one(r) for r in resources if r.namespaced))
        return report

    async def _delete_resource(self, res: APIResource, namespace: str,
                               report: ContentReport) -> None:
        c = self.client
        bulk = res.supports("deletecollection")
        if bulk:
            try:
                await c.delete_collection(res.api_version, res.kind, namespace=namespace,
                                          propagation_policy="Background")
            except (MethodNotAllowedError, NotFoundError):
                bulk = False
        if not bulk:
            listed = await c.list(res.api_version, res.kind, namespace=namespace)
            for item in listed.get("items") or []:
                if (item.get("metadata") or {}).get("deletionTimestamp"):
                    continue
                try:
                    await c.delete(res.api_version, res.kind, item["metadata"]["name"],
                                   namespace=namespace, propagation_policy="Background")
                except NotFoundError:
                    pass
        left = (await c.list(res.api_version, res.kind, namespace=namespace)).get("items") or []
        if left:
            report.remaining[f"{res.plural}.{res.group}"] = len(left)
            for item in left:
                for fin in (item.get("metadata") or {}).get("finalizers") or []:
                    report.finalizers[fin] = report.finalizers.get(fin, 0) + 1


def _summary(report: ContentReport) -> str:
    parts = []
    if report.discovery_failures:
        parts.append(f"discovery failed for {sorted(report.discovery_failures)}")
    if report.errors:
        parts.append(f"{len(report.errors)} resource types failed")
    if report.remaining:
        parts.append("content remaining: " + ", ".join(
            f"{k} {v}" for k, v in sorted(report.remaining.items())))
    return "; ".join(parts) or "content remaining"


__all__ = [
    "FINALIZER",
    "ContentReport",
    "NamespaceController",
    "deletion_conditions",
    "plan",
    "without_finalizer",
]
