"""The VirtualMachineService controller's shell: informers, the work queue
and the writes the pure :mod:`~kubevisor.controllers.vmservice.plan` asks for.

Watches VirtualMachineServices, VirtualMachines, Services and Endpoints;
a key is a VirtualMachineService's ``(namespace, name)``. A VM event
requeues the services whose selector matches it now or matched it before;
a Service or Endpoints event requeues the VirtualMachineService of that
name. One reconcile reads the caches afresh, writes the Service, then the
Endpoints, then the status (each only when it changed). A Service of that
name controlled by something else, or one the apiserver refuses, is
reported in the ``ServiceReady`` condition and not retried until something
changes. Deleting the VirtualMachineService leaves the rest to the garbage
collector (ownerReferences). The LoadBalancer controller gives the Service
its address and the node's service proxy routes it to the Endpoints.
Started by the controller manager as ``vmservice``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubevisor.client import (
    AlreadyExistsError,
    BadRequestError,
    Client,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    SharedInformers,
)
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow
from kubevisor.controllers.vmservice import plan

JSON = dict[str, Any]
Key = tuple[str, str]


class VirtualMachineServiceController:
    """Keeps a Service and an Endpoints per VirtualMachineService."""

    def __init__(self, client: Client, *, workers: int = 2,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.vmservices = self.informers.get(plan.API_VERSION, plan.KIND)
        self.vms = self.informers.get(plan.API_VERSION, plan.VM_KIND)
        self.services = self.informers.get("v1", "Service")
        self.endpoints = self.informers.get("v1", "Endpoints")
        self.vmservices.add_handler(self._on_vmservice)
        self.vms.add_handler(self._on_vm)
        self.services.add_handler(self._on_named)
        self.endpoints.add_handler(self._on_named)
        self.controller: Controller[Key] = Controller("vmservice", self.reconcile,
                                                      workers=workers)

    def _on_vmservice(self, etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj.get("metadata") or {}
        self.controller.queue.add((md.get("namespace", ""), md.get("name", "")))

    def _on_vm(self, etype: str, vm: JSON, old: JSON | None) -> None:
        ns = (vm.get("metadata") or {}).get("namespace", "")
        for vmsvc in self.vmservices.items():
            md = vmsvc.get("metadata") or {}
            if md.get("namespace") != ns:
                continue
            sel = plan.selector(vmsvc)
            if plan.matches(sel, vm) or plan.matches(sel, old):
                self.controller.queue.add((ns, md.get("name", "")))

    def _on_named(self, etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj.get("metadata") or {}
        key = (md.get("namespace", ""), md.get("name", ""))
        if self.vmservices.get(key[1], key[0]) is not None:
            self.controller.queue.add(key)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="vmservice-informers")
            await self.informers.wait_synced(self.vmservices, self.vms, self.services,
                                             self.endpoints)
            group.create_task(self.controller.run(), name="vmservice-controller")

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        vmsvc = self.vmservices.get(name, namespace)
        if vmsvc is None or (vmsvc.get("metadata") or {}).get("deletionTimestamp"):
            return None  # the garbage collector removes what it owned
        service = self.services.get(name, namespace)
        problem: plan.Problem | None = None
        if plan.controlled_by_other(service, vmsvc):
            ref = plan.controller_ref(service) or {}
            problem = plan.Problem(
                "ServiceNameConflict",
                f"Service {name!r} already exists, controlled by {ref.get('kind')} "
                f"{ref.get('name')!r}; delete it or rename this VirtualMachineService")
        else:
            service, problem = await self._write_service(vmsvc, service)
        endpoints = self.endpoints.get(name, namespace)
        if problem is None and service is not None:
            endpoints = await self._write_endpoints(vmsvc, service, endpoints)
        await self._write_status(vmsvc, service, endpoints, problem)
        return None

    async def _write_service(self, vmsvc: JSON, current: JSON | None
                             ) -> tuple[JSON | None, plan.Problem | None]:
        body = plan.desired_service(vmsvc, current)
        if body is None:
            return current, None
        md = vmsvc["metadata"]
        try:
            if current is None:
                return await self.client.create(body, namespace=md["namespace"]), None
            return await self.client.update(body), None
        except (ConflictError, AlreadyExistsError, NotFoundError) as exc:
            raise TemporaryError(f"service {md['namespace']}/{md['name']}: {exc}") from exc
        except (InvalidError, BadRequestError) as exc:
            return current, plan.Problem(
                "ServiceInvalid", f"Service {md['name']!r} was refused: {exc.message}; "
                "fix the VirtualMachineService's spec")
        except ForbiddenError as exc:
            return current, plan.Problem("ServiceForbidden", exc.message)

    async def _write_endpoints(self, vmsvc: JSON, service: JSON,
                               current: JSON | None) -> JSON | None:
        if plan.controlled_by_other(current, vmsvc):
            return current
        body = plan.desired_endpoints(vmsvc, self.vms.items(), current, service)
        if body is None:
            return current
        md = vmsvc["metadata"]
        try:
            if current is None:
                return await self.client.create(body, namespace=md["namespace"])
            return await self.client.update(body)
        except (ConflictError, AlreadyExistsError, NotFoundError) as exc:
            raise TemporaryError(f"endpoints {md['namespace']}/{md['name']}: {exc}") from exc
        except ForbiddenError:
            return current  # the namespace is going away

    async def _write_status(self, vmsvc: JSON, service: JSON | None, endpoints: JSON | None,
                            problem: plan.Problem | None) -> None:
        status = plan.desired_status(vmsvc, service, endpoints, now=rfc3339(self._clock()),
                                     problem=problem)
        if status is None:
            return
        body = copy.deepcopy(vmsvc)
        body["status"] = status
        try:
            await self.client.update_status(body)
        except (ConflictError, NotFoundError) as exc:
            md = vmsvc["metadata"]
            raise TemporaryError(f"virtualmachineservice {md['namespace']}/{md['name']}: "
                                 f"{exc}") from exc
