"""The VM controller's shell: informers in, conditions, finalizer and
placement out, through the API.

Informers (from the manager's :class:`~kubevisor.client.SharedInformers`)
on VirtualMachines, VirtualMachineClasses, VirtualMachineImages,
ClusterVirtualMachineImages, PersistentVolumeClaims, Secrets, Nodes, Pods
and RuntimeClasses. Each event queues the VMs it can matter to (a class,
image, claim or Secret: the VMs naming it; a Node, a freed pod or a VM
gone: the VMs still waiting for a node). :meth:`VMController.reconcile`
reads the world afresh from the caches, runs the pure :func:`.plan.plan`,
and for a VM whose class and image are ready and that has no node yet
runs :func:`.placement.choose` over Nodes, bound pods and placed VMs. A
chosen node is *assumed* at once (so the next VM counts it before the
informer shows it), then the host-cleanup finalizer is added (update of
the VM) and ``status.nodeName`` written with the conditions (status
subresource, get → modify → update, retried on 409). No node fits:
``VirtualMachineScheduled`` False/Unschedulable with kube-scheduler's
message and a FailedScheduling Warning Event, looked at again on the next
change or after :data:`RETRY_SECONDS`. A VM being deleted that no node
agent will clean up (never placed, or its Node is gone) loses the
finalizer here. Started by the controller manager as ``vm``.
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Mapping
from typing import Any

from kubevisor.api.vmoperator import resolve
from kubevisor.client import Client, ConflictError, NotFoundError, SharedInformers
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.events import EventRecorder, reference
from kubevisor.controllers.runtime import Controller, Result
from kubevisor.controllers.scheduler.podinfo import PodInfo
from kubevisor.controllers.vm import placement
from kubevisor.controllers.vm.plan import (
    SCHEDULED,
    Cond,
    Observed,
    Plan,
    apply_status,
    claim_names,
    plan,
    secret_names,
)

JSON = dict[str, Any]
Key = tuple[str, str]

VM_VERSION = "vmoperator.vmware.com/v1alpha6"
COMPONENT = "vm-controller"
#: How often a VM no node fits is looked at again without any change.
RETRY_SECONDS = 30.0
_CONFLICT_RETRIES = 5


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _node_name(vm: Mapping[str, Any]) -> str:
    return str((vm.get("status") or {}).get("nodeName") or "")


class VMController:
    """Resolves, places and binds VirtualMachines; ``await run()`` in a task."""

    def __init__(self, client: Client, *, informers: SharedInformers | None = None,
                 workers: int = 1, rng: random.Random | None = None) -> None:
        self.client = client
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        get = self.informers.get
        self.vms = get(VM_VERSION, "VirtualMachine")
        self.classes = get(VM_VERSION, "VirtualMachineClass")
        self.images = get(VM_VERSION, "VirtualMachineImage")
        self.cluster_images = get(VM_VERSION, "ClusterVirtualMachineImage")
        self.pvcs = get("v1", "PersistentVolumeClaim")
        self.secrets = get("v1", "Secret")
        self.nodes = get("v1", "Node")
        self.pods = get("v1", "Pod")
        self.runtime_classes = get("node.k8s.io/v1", "RuntimeClass")
        self.vms.add_handler(self._on_vm)
        self.classes.add_handler(self._on_class)
        self.images.add_handler(self._on_image)
        self.cluster_images.add_handler(self._on_image)
        self.pvcs.add_handler(self._on_claim)
        self.secrets.add_handler(self._on_secret)
        self.nodes.add_handler(self._on_node)
        self.pods.add_handler(self._on_pod)
        # Placements decide on what other placements took: one worker by default.
        self.controller: Controller[Key] = Controller("vm", self.reconcile, workers=workers)
        self.events = EventRecorder(client, COMPONENT, workers=1)
        self._rng = rng or random.Random()
        #: VMs placed here whose status.nodeName the cache may not show yet: uid -> node.
        self._assumed: dict[str, str] = {}

    # -- informer handlers ------------------------------------------------------

    def _queue_vms(self, namespace: str | None, wanted: Any) -> None:
        for vm in self.vms.items():
            key = _key(vm)
            if (namespace is None or key[0] == namespace) and wanted(vm):
                self.controller.queue.add(key)

    def _queue_waiting(self) -> None:
        """Requeue VMs without a node: capacity may have been freed."""
        self._queue_vms(None, lambda vm: not _node_name(vm) and
                        (vm.get("metadata") or {}).get("uid") not in self._assumed)

    def _on_vm(self, etype: str, vm: JSON, old: JSON | None) -> None:
        uid = (vm.get("metadata") or {}).get("uid", "")
        if etype == "DELETED":
            self._assumed.pop(uid, None)
            if _node_name(vm):
                self._queue_waiting()
            return
        if _node_name(vm):
            self._assumed.pop(uid, None)
        self.controller.queue.add(_key(vm))

    def _on_class(self, etype: str, obj: JSON, old: JSON | None) -> None:
        ns, name = _key(obj)
        self._queue_vms(ns, lambda vm: resolve.class_name(vm) == name)
        if etype != "ADDED":
            self._queue_waiting()  # placed VMs of a changed class take more or less

    def _on_image(self, etype: str, obj: JSON, old: JSON | None) -> None:
        ns, name = _key(obj)

        def names_it(vm: JSON) -> bool:
            ref = resolve.image_ref(vm)
            return ref is not None and ref.name == name

        self._queue_vms(ns or None, names_it)

    def _on_claim(self, etype: str, obj: JSON, old: JSON | None) -> None:
        ns, name = _key(obj)
        self._queue_vms(ns, lambda vm: name in claim_names(vm))

    def _on_secret(self, etype: str, obj: JSON, old: JSON | None) -> None:
        ns, name = _key(obj)
        self._queue_vms(ns, lambda vm: name in secret_names(vm))

    def _on_node(self, etype: str, node: JSON, old: JSON | None) -> None:
        if etype != "DELETED" and old is not None and placement.node_view(old).get("spec") == \
                placement.node_view(node).get("spec") and \
                (old.get("status") or {}).get("allocatable") == \
                (node.get("status") or {}).get("allocatable") and \
                (old.get("metadata") or {}).get("labels") == \
                (node.get("metadata") or {}).get("labels"):
            return  # a heartbeat: nothing placement looks at changed
        self._queue_waiting()
        if etype == "DELETED":
            name = (node.get("metadata") or {}).get("name")
            self._queue_vms(None, lambda vm: _node_name(vm) == name)

    def _on_pod(self, etype: str, pod: JSON, old: JSON | None) -> None:
        was_bound = bool(((old or pod).get("spec") or {}).get("nodeName"))
        phase = (pod.get("status") or {}).get("phase")
        old_phase = ((old or {}).get("status") or {}).get("phase")
        freed = (etype == "DELETED" and was_bound) or (
            phase in ("Succeeded", "Failed") and old_phase not in ("Succeeded", "Failed"))
        if freed:
            self._queue_waiting()

    # -- running ----------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="vm-informers")
            group.create_task(self.events.run(), name="vm-events")
            await self.informers.wait_synced(
                self.vms, self.classes, self.images, self.cluster_images, self.pvcs,
                self.secrets, self.nodes, self.pods, self.runtime_classes)
            for vm in self.vms.items():
                self.controller.queue.add(_key(vm))
            group.create_task(self.controller.run(), name="vm-controller")

    # -- reconcile ----------------------------------------------------------------

    def observe(self, vm: JSON) -> Observed:
        """What the caches hold of everything ``vm`` names."""
        ns = _key(vm)[0]
        uid = (vm.get("metadata") or {}).get("uid", "")
        name = resolve.class_name(vm)
        vmclass = self.classes.get(name, ns) if name else None
        image = None
        ref = resolve.image_ref(vm)
        if ref is not None:
            if ref.kind == resolve.VMI:
                image = self.images.get(ref.name, ns)
            if image is None:
                image = self.cluster_images.get(ref.name)
        pvcs = {c: p for c in claim_names(vm) if (p := self.pvcs.get(c, ns)) is not None}
        secrets = {s: o for s in secret_names(vm) if (o := self.secrets.get(s, ns)) is not None}
        node_name = _node_name(vm) or self._assumed.get(uid, "")
        return Observed(vm=vm, vmclass=vmclass, image=image, pvcs=pvcs, secrets=secrets,
                        node_name=node_name,
                        node_exists=not node_name or self.nodes.get(node_name) is not None)

    def _placed(self, exclude_uid: str) -> list[tuple[PodInfo, str]]:
        """Every other VM with a node (or assumed on one), as the algorithm sees it."""
        out = []
        for vm in self.vms.items():
            uid = (vm.get("metadata") or {}).get("uid", "")
            node = _node_name(vm) or self._assumed.get(uid, "")
            if not node or uid == exclude_uid:
                continue
            name = resolve.class_name(vm)
            vmclass = self.classes.get(name, _key(vm)[0]) if name else None
            out.append((placement.vm_info(vm, vmclass), node))
        return out

    def place(self, vm: JSON, vmclass: JSON | None) -> tuple[str | None, str]:
        uid = (vm.get("metadata") or {}).get("uid", "")
        rcs = {(rc.get("metadata") or {}).get("name", ""): rc
               for rc in self.runtime_classes.items()}
        cache = placement.snapshot(self.nodes.items(), self.pods.items(), self._placed(uid),
                                   runtime_classes=rcs)
        return placement.choose(placement.vm_info(vm, vmclass), cache, rng=self._rng)

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        vm = self.vms.get(name, namespace)
        if vm is None:
            return None
        obs = self.observe(vm)
        decided = plan(obs)
        if decided.deleting:
            if decided.remove_finalizer:
                await self._set_finalizer(vm, present=False)
            return None
        if decided.add_finalizer:
            vm = await self._set_finalizer(vm, present=True) or vm
        if not decided.place:
            await self._write_status(vm, decided, (), node_name="")
            return None
        node, message = self.place(vm, obs.vmclass)
        if node is None:
            await self._write_status(vm, decided, (Cond(SCHEDULED, "False", "Unschedulable",
                                                        message),), node_name="")
            self.events.record(reference(vm), "Warning", "FailedScheduling", message)
            return Result(requeue_after=RETRY_SECONDS)
        uid = vm["metadata"].get("uid", "")
        self._assumed[uid] = node
        try:
            vm = await self._set_finalizer(vm, present=True) or vm
            written = await self._write_status(
                vm, decided, (Cond(SCHEDULED, "True", "Scheduled",
                                   f'placed on node "{node}"'),), node_name=node)
        except BaseException:
            self._assumed.pop(uid, None)
            raise
        if written is not None and _node_name(written) == node:
            self.events.record(reference(vm), "Normal", "Scheduled",
                               f"Successfully assigned {namespace}/{name} to {node}")
        return None

    # -- writes -------------------------------------------------------------------

    async def _fresh(self, vm: JSON) -> JSON | None:
        ns, name = _key(vm)
        try:
            return await self.client.get(VM_VERSION, "VirtualMachine", name, namespace=ns)
        except NotFoundError:
            return None

    async def _set_finalizer(self, vm: JSON, *, present: bool) -> JSON | None:
        """Add or remove the host-cleanup finalizer (update of the VM); the
        object as written, or None if the VM is gone."""
        obj: JSON | None = vm
        for _ in range(_CONFLICT_RETRIES):
            if obj is None:
                return None
            finalizers = list((obj.get("metadata") or {}).get("finalizers") or ())
            if (resolve.FINALIZER in finalizers) == present:
                return obj
            if present:
                finalizers.append(resolve.FINALIZER)
            else:
                finalizers = [f for f in finalizers if f != resolve.FINALIZER]
            body = {**obj, "metadata": {**obj["metadata"], "finalizers": finalizers}}
            try:
                return await self.client.update(body, field_manager=COMPONENT)
            except NotFoundError:
                return None
            except ConflictError:
                obj = await self._fresh(obj)
        raise TemporaryError(f"virtualmachine {_key(vm)}: finalizer update kept conflicting")

    async def _write_status(self, vm: JSON, decided: Plan, extra: tuple[Cond, ...], *,
                            node_name: str) -> JSON | None:
        """Merge the controller's status fields (get → modify → update status,
        retried on conflict); the object as written (or unchanged), None if gone."""
        obj: JSON | None = vm
        for _ in range(_CONFLICT_RETRIES):
            if obj is None:
                return None
            status = copy.deepcopy(obj.get("status") or {})
            generation = (obj.get("metadata") or {}).get("generation")
            if not apply_status(status, (*decided.conditions, *extra),
                                class_ref=decided.class_ref, node_name=node_name,
                                generation=generation):
                return obj
            try:
                return await self.client.update_status({**obj, "status": status},
                                                       field_manager=COMPONENT)
            except NotFoundError:
                return None
            except ConflictError:
                obj = await self._fresh(obj)
        raise TemporaryError(f"virtualmachine {_key(vm)}: status update kept conflicting")
