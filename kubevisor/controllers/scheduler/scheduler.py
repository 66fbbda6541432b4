"""The scheduler's shell: informers in, decisions out, bindings through the API.

Informers on Pods, Nodes, RuntimeClasses and Namespaces (from the
controller manager's :class:`~kubevisor.client.SharedInformers`) keep the
:class:`~.cache.Cache` current (each event touches one node); the
VirtualMachines placed on nodes count there too, as pods requesting their
class's resources (the VM controller places them with this algorithm),
so pods and VMs share a node's capacity. The informers also feed the
:class:`~.queue.SchedulingQueue` with pending pods whose schedulerName is
``default-scheduler`` (or empty). One loop pops a pod, runs the pure
:func:`~.algorithm.schedule`, assumes the pod on the chosen node at once
and binds it in the background (``parallel_binds`` bindings in flight, a
compare-and-swap ``pods/binding`` POST carrying the pod's uid). A pod no
node fits gets PodScheduled=False/Unschedulable with kube's message
(written through the status subresource only when it changed) and a
FailedScheduling Warning event, and waits for a node to be added or
changed or a bound pod to be deleted (or ``retry_interval``). A bound pod
gets a Scheduled event. Started by the controller manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubevisor.api.vmoperator import resolve
from kubevisor.client import (
    Client,
    ClientError,
    ConflictError,
    NotFoundError,
    SharedInformers,
    metadata_only,
)
from kubevisor.controllers.conditions import find_condition, set_condition
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.scheduler.algorithm import fit_error, schedule
from kubevisor.controllers.scheduler.cache import Cache
from kubevisor.controllers.scheduler.podinfo import DEFAULT_SCHEDULER, PodInfo, pod_info
from kubevisor.controllers.scheduler.queue import QueueTimes, SchedulingQueue
from kubevisor.controllers.scheduler.transport import lean_pool_for
from kubevisor.controllers.vm.placement import vm_info

JSON = dict[str, Any]
log = logging.getLogger(__name__)

_TERMINAL = ("Succeeded", "Failed")
VM_API = "vmoperator.vmware.com/v1alpha6"


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    name: str = DEFAULT_SCHEDULER
    percentage_of_nodes_to_score: int = 0  # 0: adaptive, as kube-scheduler
    parallel_binds: int = 16
    times: QueueTimes = field(default_factory=QueueTimes)
    seed: int | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _relevant_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Did more than status, bookkeeping metadata and the binding change
    (upstream's isPodUpdated)?"""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec != new_spec and (old_spec.get("nodeName") == new_spec.get("nodeName") or (
            {**old_spec, "nodeName": None} != {**new_spec, "nodeName": None})):
        return True
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return om.get("labels") != nm.get("labels") or om.get("annotations") != nm.get("annotations")


def _node_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Could the change to this Node let a pending pod fit?"""
    if old is None:
        return True
    if old.get("spec") != new.get("spec"):
        return True
    if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
        return True
    os_, ns_ = old.get("status") or {}, new.get("status") or {}
    return os_.get("allocatable") != ns_.get("allocatable")


class Scheduler:
    """``await scheduler.run()`` in a task; cancel it to stop."""

    def __init__(self, client: Client, options: SchedulerOptions | None = None, *,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self.options = options or SchedulerOptions()
        self.cache = Cache()
        self.queue = SchedulingQueue(self.options.times)
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.pods = self.informers.get("v1", "Pod")
        self.nodes = self.informers.get("v1", "Node")
        self.runtime_classes = self.informers.get("node.k8s.io/v1", "RuntimeClass")
        self.namespaces = self.informers.get("v1", "Namespace", transform=metadata_only)
        self.vms = self.informers.get(VM_API, "VirtualMachine")
        self.vm_classes = self.informers.get(VM_API, "VirtualMachineClass")
        self._lean = lean_pool_for(client, size=self.options.parallel_binds)
        self.events = EventRecorder(client, self.options.name, lean=self._lean)
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)
        self.namespaces.add_handler(self._on_namespace)
        self.vms.add_handler(self._on_vm)
        self.vm_classes.add_handler(self._on_vm_class)
        self._rng = random.Random(self.options.seed)
        self._binds = asyncio.Semaphore(self.options.parallel_binds)
        self._tasks: set[asyncio.Task[None]] = set()
        self._start = 0
        #: Counters for tests, logs and the benchmark.
        self.bound = 0
        self.unschedulable = 0
        self.bind_errors = 0

    # -- informer handlers -----------------------------------------------------

    def _runtime_class(self, spec: Mapping[str, Any]) -> JSON | None:
        name = spec.get("runtimeClassName")
        return self.runtime_classes.get(name) if name else None

    def _info(self, pod: Mapping[str, Any]) -> PodInfo:
        return pod_info(pod, self._runtime_class(pod.get("spec") or {}))

    def _mine(self, pod: Mapping[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        return ((spec.get("schedulerName") or DEFAULT_SCHEDULER) == self.options.name
                and not (pod.get("metadata") or {}).get("deletionTimestamp")
                and not spec.get("schedulingGates")
                and (pod.get("status") or {}).get("phase") not in _TERMINAL)

    def _on_pod(self, etype: str, obj: JSON, old: JSON | None) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        uid = str(meta.get("uid") or "")
        if etype == "DELETED":
            self.queue.delete(key)
            if self.cache.remove_pod(uid) is not None:
                self.queue.move_all()
            return
        spec = obj.get("spec") or {}
        node = spec.get("nodeName")
        if node:
            self.queue.delete(key)
            if (obj.get("status") or {}).get("phase") in _TERMINAL:
                if self.cache.remove_pod(uid) is not None:
                    self.queue.move_all()
                return
            if self.cache.node_of(uid) == node:
                self.cache.assumed.discard(uid)  # our binding, confirmed (or known already)
                if old is not None and not _relevant_change(old, obj):
                    return  # a status update (the node agent's): nothing we count changed
            self.cache.confirm(self._info(obj), node)
            return
        if uid in self.cache.assumed:
            return  # our binding is in flight; this is an older view
        if not self._mine(obj):
            self.queue.delete(key)
            return
        info = self._info(obj)
        if etype == "ADDED" or key not in self.queue:
            self.queue.add(info)
        else:
            self.queue.update(info, relevant=old is None or _relevant_change(old, obj))

    def _on_node(self, etype: str, obj: JSON, old: JSON | None) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if etype == "DELETED":
            self.cache.remove_node(name)
            return
        self.cache.set_node(obj)
        if _node_changed(old, obj):
            self.queue.move_all()

    def _on_vm(self, etype: str, obj: JSON, old: JSON | None) -> None:
        """A placed VM holds its class's resources on its node, like a bound pod."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        node = (obj.get("status") or {}).get("nodeName")
        if etype == "DELETED" or not node:
            if self.cache.remove_pod(uid) is not None:
                self.queue.move_all()
            return
        vmclass = self.vm_classes.get(resolve.class_name(obj), meta.get("namespace") or "")
        if self.cache.node_of(uid) == node and old is not None and \
                resolve.class_name(old) == resolve.class_name(obj):
            return  # a status update: what the VM holds did not change
        self.cache.confirm(vm_info(obj, vmclass), str(node))

    def _on_vm_class(self, etype: str, obj: JSON, old: JSON | None) -> None:
        """The placed VMs of a class that came or changed hold its new size."""
        meta = obj.get("metadata") or {}
        resized = False
        for vm in self.vms.items():
            vm_meta = vm.get("metadata") or {}
            if vm_meta.get("namespace") == meta.get("namespace") and \
                    resolve.class_name(vm) == meta.get("name"):
                self._on_vm("MODIFIED", vm, None)
                resized = True
        if resized:
            self.queue.move_all()  # a class that shrank may leave room

    def _on_namespace(self, etype: str, obj: JSON, old: JSON | None) -> None:
        meta = obj.get("metadata") or {}
        if etype == "DELETED":
            self.cache.namespace_labels.pop(meta.get("name") or "", None)
        else:
            self.cache.namespace_labels[meta.get("name") or ""] = meta.get("labels") or {}

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                if self._own_informers:
                    group.create_task(self.informers.run(), name="scheduler-informers")
                group.create_task(self.events.run(), name="scheduler-events")
                await self.informers.wait_synced(self.nodes, self.runtime_classes,
                                                 self.namespaces, self.pods, self.vm_classes,
                                                 self.vms)
                group.create_task(self._flush_loop(), name="scheduler-flush")
                group.create_task(self._schedule_loop(), name="scheduler-loop")
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._lean is not None:
                self._lean.close()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.queue.flush()

    async def _schedule_loop(self) -> None:
        while True:
            pod = await self.queue.pop()
            try:
                await self.schedule_one(pod)
            except Exception:
                log.exception("scheduler: %s/%s failed", pod.namespace, pod.name)
                self.cache.forget(pod.uid)
                self.queue.retry(pod.key)
            await asyncio.sleep(0)  # let informers and bindings run

    async def schedule_one(self, pod: PodInfo) -> None:
        decision, self._start = schedule(
            pod, self.cache, start=self._start,
            percentage=self.options.percentage_of_nodes_to_score, rng=self._rng)
        if decision.node is None:
            self.unschedulable += 1
            self.queue.unschedulable(pod.key)
            self._spawn(self._report_unschedulable(pod, fit_error(decision.total,
                                                                  decision.reasons)))
            return
        self.cache.assume(pod, decision.node)
        await self._binds.acquire()
        self._spawn(self._bind(pod, decision.node))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bind(self, pod: PodInfo, node: str) -> None:
        try:
            path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/binding"
            body = {"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
            if self._lean is not None:
                await self._lean.request("POST", path, body)
            else:
                await self.client.request("POST", path, body=body)
        except (ConflictError, NotFoundError) as exc:
            # Bound by someone else, replaced or gone: the informer has the truth.
            log.info("scheduler: binding %s/%s: %s", pod.namespace, pod.name, exc)
            self.cache.forget(pod.uid)
            self.queue.done(pod.key, pod.uid)
        except ClientError as exc:
            self.bind_errors += 1
            log.warning("scheduler: binding %s/%s to %s failed: %s", pod.namespace, pod.name,
                        node, exc)
            self.cache.forget(pod.uid)
            self.queue.retry(pod.key)
        else:
            self.bound += 1
            self.queue.done(pod.key, pod.uid)
            self.events.record(self._ref(pod), "Normal", "Scheduled",
                               f"Successfully assigned {pod.namespace}/{pod.name} to {node}")
        finally:
            self._binds.release()

    def _ref(self, pod: PodInfo) -> JSON:
        return {"kind": "Pod", "apiVersion": "v1", "namespace": pod.namespace, "name": pod.name,
                "uid": pod.uid, "resourceVersion": pod.resource_version}

    async def _report_unschedulable(self, pod: PodInfo, message: str) -> None:
        """PodScheduled=False (only when it changes) and a FailedScheduling event."""
        current = self.pods.get(pod.name, pod.namespace)
        if current is None or (current.get("metadata") or {}).get("uid") != pod.uid:
            return
        self.events.record(reference(current), "Warning", "FailedScheduling", message)
        conditions = (current.get("status") or {}).get("conditions")
        had = find_condition(conditions, "PodScheduled")
        new, changed = set_condition(conditions, type="PodScheduled", status="False",
                                     reason="Unschedulable", message=message, now=_now())
        if not changed:
            return
        for cond in new:
            if cond.get("type") == "PodScheduled" and had is None:
                cond["lastProbeTime"] = None
        with contextlib.suppress(ConflictError, NotFoundError):
            try:
                await self.client.patch(
                    "v1", "Pod", pod.name,
                    {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                     "status": {"conditions": new}},
                    namespace=pod.namespace, subresource="status")
            except ClientError as exc:
                log.warning("scheduler: status of %s/%s not written: %s", pod.namespace,
                            pod.name, exc)
