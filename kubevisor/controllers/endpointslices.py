"""The EndpointSlice controller (kube-controller-manager's endpointslice
controller), discovery.k8s.io/v1.

For every Service with a selector it keeps EndpointSlices labelled
``kubernetes.io/service-name: <service>`` and
``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io``,
owned by the Service (so they go with it), named ``<service>-<random>``.
Each endpoint is one pod: its address, conditions ``ready`` (Ready and not
terminating, or published anyway), ``serving`` (Ready) and
``terminating``, node name, hostname and a ``targetRef``. Pods whose named
ports resolve to the same numbers share slices; a slice holds at most
:data:`MAX_ENDPOINTS` endpoints. An endpoint stays in the slice it is in
while it lives (few writes per change), new ones fill slices with room
first; a Service without endpoints keeps one empty placeholder slice, as
kube does. Only changed slices are written. Pure part: :func:`plan`; the
shell: :class:`EndpointSliceController`, started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubevisor.client import (
    Client,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    SharedInformers,
)
from kubevisor.controllers import servicebackends as sb
from kubevisor.controllers.endpoints import services_of
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
PortSet = tuple[tuple[str, int, str, str], ...]

API_VERSION = "discovery.k8s.io/v1"
MAX_ENDPOINTS = 100
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"


def _endpoint(b: sb.Backend, svc: JSON) -> JSON:
    ep: JSON = {"addresses": [b.ip],
                "conditions": {"ready": b.ready, "serving": b.serving,
                               "terminating": b.terminating}}
    host = sb.hostname(b.pod, svc)
    if host:
        ep["hostname"] = host
    node = (b.pod.get("spec") or {}).get("nodeName")
    if node:
        ep["nodeName"] = node
    ep["targetRef"] = sb.target_ref(b.pod)
    return ep


def _ports(ports: PortSet) -> list[JSON]:
    out = []
    for name, number, protocol, app in ports:
        port: JSON = {"name": name, "port": number, "protocol": protocol}
        if app:
            port["appProtocol"] = app
        out.append(port)
    return out


def _port_set(slice_: JSON) -> PortSet:
    return tuple(sorted((p.get("name") or "", int(p.get("port") or 0), p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in slice_.get("ports") or ()))


def _uid_of(ep: JSON) -> str:
    return str((ep.get("targetRef") or {}).get("uid") or (ep.get("addresses") or [""])[0])


def labels_for(svc: JSON) -> dict[str, str]:
    md = svc.get("metadata") or {}
    return {**sb.service_labels(svc), SERVICE_NAME: md.get("name", ""),
            MANAGED_BY: CONTROLLER_NAME}


def owned_by(slice_: JSON, svc: JSON) -> bool:
    uid = (svc.get("metadata") or {}).get("uid")
    return any(ref.get("uid") == uid and ref.get("controller")
               for ref in (slice_.get("metadata") or {}).get("ownerReferences") or ())


@dataclass(slots=True)
class SlicePlan:
    """What to write: new slices, changed slices (full bodies), names to delete."""

    create: list[JSON] = field(default_factory=list)
    update: list[JSON] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


def new_slice(svc: JSON, ports: PortSet, endpoints: list[JSON], trigger: str) -> JSON:
    md = svc.get("metadata") or {}
    family = ((svc.get("spec") or {}).get("ipFamilies") or ["IPv4"])[0]
    return {
        "apiVersion": API_VERSION, "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{md.get('name', '')[:57]}-", "namespace": md.get("namespace"),
            "labels": labels_for(svc), "annotations": {sb.TRIGGER_TIME: trigger},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": md.get("name"),
                                 "uid": md.get("uid"), "controller": True,
                                 "blockOwnerDeletion": True}]},
        "addressType": family,
        "endpoints": endpoints,
        "ports": _ports(ports),
    }


def plan(svc: JSON, pods: Iterable[JSON], existing: list[JSON], *, now: str,
         max_endpoints: int = MAX_ENDPOINTS) -> SlicePlan:
    """The writes that make ``existing`` (this Service's slices) match the pods."""
    out = SlicePlan()
    mine = [s for s in existing if owned_by(s, svc)]
    out.delete.extend(s["metadata"]["name"] for s in existing if not owned_by(s, svc))
    spec = svc.get("spec") or {}
    chosen = sb.backends(svc, pods, include_terminating=True,
                         family=(spec.get("ipFamilies") or ["IPv4"])[0])
    headless_no_ports = sb.is_headless(svc) and not spec.get("ports")
    wanted: dict[PortSet, dict[str, JSON]] = {}
    for b in sorted(chosen, key=lambda b: b.ip):
        if not b.ports and not headless_no_ports:
            continue
        ports = tuple(sorted(set(b.ports)))
        ep = _endpoint(b, svc)
        wanted.setdefault(ports, {})[_uid_of(ep)] = ep
    labels = labels_for(svc)
    for ports, eps in wanted.items():
        placed: set[str] = set()
        slices = [s for s in mine if _port_set(s) == ports]
        bodies: list[tuple[JSON, list[JSON]]] = []
        for s in slices:
            keep = [eps[_uid_of(e)] for e in s.get("endpoints") or () if _uid_of(e) in eps
                    and _uid_of(e) not in placed]
            placed.update(_uid_of(e) for e in keep)
            bodies.append((s, keep))
        pending = [ep for uid, ep in eps.items() if uid not in placed]
        for _s, keep in bodies:
            room = max_endpoints - len(keep)
            if room > 0 and pending:
                keep.extend(pending[:room])
                pending = pending[room:]
        for s, keep in bodies:
            if not keep:
                out.delete.append(s["metadata"]["name"])
                continue
            _update_if_changed(out, s, keep, ports, labels, now)
        while pending:
            out.create.append(new_slice(svc, ports, pending[:max_endpoints], now))
            pending = pending[max_endpoints:]
    placeholder = not wanted
    for s in mine:
        if _port_set(s) in wanted or s["metadata"]["name"] in out.delete:
            continue
        if placeholder:
            placeholder = False  # a Service without endpoints keeps one empty slice
            _update_if_changed(out, s, [], (), labels, now)
            continue
        out.delete.append(s["metadata"]["name"])
    if placeholder:
        out.create.append(new_slice(svc, (), [], now))
    return out


def _update_if_changed(out: SlicePlan, current: JSON, endpoints: list[JSON], ports: PortSet,
                       labels: dict[str, str], now: str) -> None:
    cur_labels = (current.get("metadata") or {}).get("labels") or {}
    if (current.get("endpoints") or []) == endpoints and cur_labels == labels and \
            (current.get("ports") or []) == _ports(ports):
        return
    body = copy.deepcopy(current)
    body["endpoints"] = endpoints
    body["ports"] = _ports(ports)
    md = body["metadata"]
    md["labels"] = labels
    md["annotations"] = {**(md.get("annotations") or {}), sb.TRIGGER_TIME: now}
    out.update.append(body)


class EndpointSliceController:
    """Watches Services, Pods and EndpointSlices; writes EndpointSlices."""

    def __init__(self, client: Client, *, workers: int = 2,
                 clock: Callable[[], datetime] = utcnow,
                 max_endpoints: int = MAX_ENDPOINTS,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self._max = max_endpoints
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.services = self.informers.get("v1", "Service")
        self.pods = self.informers.get("v1", "Pod")
        self.slices = self.informers.get(API_VERSION, "EndpointSlice",
                                         label_selector=f"{MANAGED_BY}={CONTROLLER_NAME}")
        self._pods_by_ns = sb.ByNamespace()
        self._services_by_ns = sb.ByNamespace()
        self.services.add_handler(self._services_by_ns.on_event)
        self.pods.add_handler(self._pods_by_ns.on_event)
        self.services.add_handler(self._on_service)
        self.pods.add_handler(self._on_pod)
        self.slices.add_handler(self._on_slice)
        self.controller: Controller[Key] = Controller("endpointslices", self.reconcile,
                                                      workers=workers)
        # What this controller wrote and the cache has yet to show:
        # service key -> {slice name: resourceVersion, or "" once deleted}.
        self._written: dict[Key, dict[str, str]] = {}

    def _on_service(self, etype: str, svc: JSON, old: JSON | None) -> None:
        md = svc.get("metadata") or {}
        self.controller.queue.add((md.get("namespace", ""), md.get("name", "")))

    def _on_pod(self, etype: str, pod: JSON, old: JSON | None) -> None:
        ns = (pod.get("metadata") or {}).get("namespace", "")
        for key in services_of(self._services_by_ns.in_namespace(ns), pod, old):
            self.controller.queue.add(key)

    def _on_slice(self, etype: str, slice_: JSON, old: JSON | None) -> None:
        md = slice_.get("metadata") or {}
        name = (md.get("labels") or {}).get(SERVICE_NAME)
        if name:
            self.controller.queue.add((md.get("namespace", ""), name))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="endpointslices-informers")
            await self.informers.wait_synced(self.services, self.pods, self.slices)
            group.create_task(self.controller.run(), name="endpointslice-controller")

    def _fresh(self, key: Key) -> bool:
        written = self._written.get(key)
        if not written:
            return True
        for name, rv in list(written.items()):
            cached = self.slices.get(name, key[0])
            if rv == "" and cached is None:
                del written[name]
            elif rv and cached is not None and \
                    int(cached["metadata"].get("resourceVersion") or 0) >= int(rv):
                del written[name]
        if not written:
            del self._written[key]
            return True
        return False

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        if not self._fresh(key):
            return Result(requeue_after=0.05)
        svc = self.services.get(name, namespace)
        existing = [s for s in self.slices.items()
                    if (s.get("metadata") or {}).get("namespace") == namespace
                    and ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME) == name]
        if svc is None or not sb.selector(svc):
            # The garbage collector removes slices of a deleted Service; a
            # Service that lost its selector loses its slices here.
            todo = SlicePlan(delete=[s["metadata"]["name"] for s in existing]) \
                if svc is not None else SlicePlan()
        else:
            pods = self._pods_by_ns.in_namespace(namespace)
            todo = plan(svc, pods, existing, now=rfc3339(self._clock()),
                        max_endpoints=self._max)
        if todo:
            await self._apply(key, todo)
        return None

    async def _apply(self, key: Key, todo: SlicePlan) -> None:
        written = self._written.setdefault(key, {})
        try:
            for name in todo.delete:
                try:
                    await self.client.delete(API_VERSION, "EndpointSlice", name,
                                             namespace=key[0])
                except NotFoundError:
                    pass
                written[name] = ""
            for body in todo.update:
                stored = await self.client.update(body)
                written[stored["metadata"]["name"]] = stored["metadata"]["resourceVersion"]
            for body in todo.create:
                stored = await self.client.create(body, namespace=key[0])
                written[stored["metadata"]["name"]] = stored["metadata"]["resourceVersion"]
        except (ConflictError, NotFoundError) as exc:
            raise TemporaryError(f"endpointslices of {key[0]}/{key[1]}: {exc}") from exc
        except ForbiddenError:
            pass  # the namespace is being deleted, with its Services
