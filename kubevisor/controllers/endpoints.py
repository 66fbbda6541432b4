"""The Endpoints controller (kube-controller-manager's endpoint controller).

For every Service with a selector it keeps an Endpoints object of the same
name whose subsets list the selected pods: ready pods under ``addresses``,
the others under ``notReadyAddresses`` (all under ``addresses`` when the
Service sets ``publishNotReadyAddresses``, which also keeps terminating
pods), each with the pod's IP, node name and a ``targetRef`` to the pod;
ports resolved per pod (named target ports through the pod's container
ports), subsets packed as kube packs them (addresses sharing the same
ports together). The object carries the Service's labels (plus
``service.kubernetes.io/headless`` for a headless Service) and the
``endpoints.kubernetes.io/last-change-trigger-time`` annotation, is
rewritten only when it changed, capped at 1,000 addresses
(``endpoints.kubernetes.io/over-capacity: truncated``), and deleted with
its Service. Services without a selector are left alone: their Endpoints
belong to the user. Pure part: :func:`desired_subsets`, :func:`plan`; the
shell: :class:`EndpointsController`, started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from kubevisor.client import (
    AlreadyExistsError,
    Client,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    SharedInformers,
)
from kubevisor.controllers import servicebackends as sb
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]

MAX_ADDRESSES = 1000
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def _address(b: sb.Backend, svc: JSON) -> JSON:
    addr: JSON = {"ip": b.ip}
    host = sb.hostname(b.pod, svc)
    if host:
        addr["hostname"] = host
    node = (b.pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    addr["targetRef"] = sb.target_ref(b.pod)
    return addr


def _port(port: tuple[str, int, str, str]) -> JSON:
    name, number, protocol, app = port
    out: JSON = {"port": number, "protocol": protocol}
    if name:
        out["name"] = name
    if app:
        out["appProtocol"] = app
    return out


def desired_subsets(svc: JSON, backends: Iterable[sb.Backend]) -> tuple[list[JSON], bool]:
    """The packed subsets for ``backends``; (subsets, truncated)."""
    # Every (address, ready) goes with the set of ports it serves; addresses
    # serving the same set share a subset (kube's RepackSubsets).
    groups: dict[tuple[tuple[str, int, str, str], ...], dict[str, list[JSON]]] = {}
    headless_no_ports = sb.is_headless(svc) and not (svc.get("spec") or {}).get("ports")
    kept = 0
    truncated = False
    ordered = sorted(backends, key=lambda b: (not b.ready, b.ip))
    for b in ordered:
        if not b.ports and not headless_no_ports:
            continue
        if kept >= MAX_ADDRESSES:
            truncated = True
            break
        kept += 1
        ports = tuple(sorted(set(b.ports)))
        group = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        group["addresses" if b.ready else "notReadyAddresses"].append(_address(b, svc))
    subsets = []
    for ports, group in groups.items():
        subset: JSON = {}
        for field in ("addresses", "notReadyAddresses"):
            if group[field]:
                subset[field] = sorted(group[field], key=lambda a: (a["ip"],
                                                                    a["targetRef"]["uid"]))
        if ports:
            subset["ports"] = [_port(p) for p in ports]
        subsets.append(subset)
    subsets.sort(key=_subset_key)
    return subsets, truncated


def _subset_key(subset: JSON) -> tuple[str, str]:
    addrs = subset.get("addresses") or subset.get("notReadyAddresses") or [{}]
    return (str(addrs[0].get("ip", "")), repr(subset.get("ports")))


def _ips(endpoints: JSON | None) -> set[str]:
    return {a.get("ip", "") for s in (endpoints or {}).get("subsets") or ()
            for f in ("addresses", "notReadyAddresses") for a in s.get(f) or ()}


def plan(svc: JSON, pods: Iterable[JSON], current: JSON | None, *, now: str) -> JSON | None:
    """The Endpoints to write for ``svc`` (None: nothing to write)."""
    if not sb.selector(svc):
        return None
    spec = svc.get("spec") or {}
    chosen = sb.backends(svc, pods, include_terminating=bool(spec.get("publishNotReadyAddresses")),
                         family=(spec.get("ipFamilies") or ["IPv4"])[0])
    subsets, truncated = desired_subsets(svc, chosen)
    labels = sb.service_labels(svc)
    meta = svc.get("metadata") or {}
    if current is not None:
        cur_labels = (current.get("metadata") or {}).get("labels") or {}
        cur_ann = (current.get("metadata") or {}).get("annotations") or {}
        if (current.get("subsets") or []) == subsets and cur_labels == labels and \
                (cur_ann.get(OVER_CAPACITY) == "truncated") == truncated:
            return None
        body = copy.deepcopy(current)
    else:
        body = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")}}
    md = body["metadata"]
    md["labels"] = labels
    if not labels:
        md.pop("labels")
    annotations = dict(md.get("annotations") or {})
    lost = _ips(current) - {a["ip"] for s in subsets
                            for f in ("addresses", "notReadyAddresses") for a in s.get(f) or ()}
    trigger = now if lost else (sb.trigger_time(svc, (b.pod for b in chosen)) or now)
    annotations[sb.TRIGGER_TIME] = trigger
    if truncated:
        annotations[OVER_CAPACITY] = "truncated"
    else:
        annotations.pop(OVER_CAPACITY, None)
    md["annotations"] = annotations
    body["subsets"] = subsets
    if not subsets:
        body.pop("subsets")
    return body


class EndpointsController:
    """Watches Services, Pods and Endpoints; writes Endpoints."""

    def __init__(self, client: Client, *, workers: int = 2,
                 clock: Callable[[], datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._clock = clock
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.services = self.informers.get("v1", "Service")
        self.pods = self.informers.get("v1", "Pod")
        self.endpoints = self.informers.get("v1", "Endpoints")
        self._pods_by_ns = sb.ByNamespace()
        self._services_by_ns = sb.ByNamespace()
        self.services.add_handler(self._services_by_ns.on_event)
        self.pods.add_handler(self._pods_by_ns.on_event)
        self.services.add_handler(self._on_service)
        self.pods.add_handler(self._on_pod)
        self.endpoints.add_handler(self._on_endpoints)
        self.controller: Controller[Key] = Controller("endpoints", self.reconcile,
                                                      workers=workers)

    def _on_service(self, etype: str, svc: JSON, old: JSON | None) -> None:
        md = svc.get("metadata") or {}
        self.controller.queue.add((md.get("namespace", ""), md.get("name", "")))

    def _on_pod(self, etype: str, pod: JSON, old: JSON | None) -> None:
        ns = (pod.get("metadata") or {}).get("namespace", "")
        for key in services_of(self._services_by_ns.in_namespace(ns), pod, old):
            self.controller.queue.add(key)

    def _on_endpoints(self, etype: str, ep: JSON, old: JSON | None) -> None:
        md = ep.get("metadata") or {}
        key = (md.get("namespace", ""), md.get("name", ""))
        svc = self.services.get(key[1], key[0])
        if svc is not None and sb.selector(svc):
            if etype == "DELETED" or old is None:
                self.controller.queue.add(key)
        elif svc is None and etype != "DELETED" and sb.TRIGGER_TIME in (md.get("annotations") or {}):
            self.controller.queue.add(key)  # ours, left behind by a deleted Service

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="endpoints-informers")
            await self.informers.wait_synced(self.services, self.pods, self.endpoints)
            group.create_task(self.controller.run(), name="endpoints-controller")

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        svc = self.services.get(name, namespace)
        current = self.endpoints.get(name, namespace)
        if svc is None:
            if current is not None and sb.TRIGGER_TIME in \
                    ((current.get("metadata") or {}).get("annotations") or {}):
                try:
                    await self.client.delete("v1", "Endpoints", name, namespace=namespace)
                except NotFoundError:
                    pass
            return None
        pods = self._pods_by_ns.in_namespace(namespace)
        body = plan(svc, pods, current, now=rfc3339(self._clock()))
        if body is None:
            return None
        try:
            if current is None:
                await self.client.create(body, namespace=namespace)
            else:
                await self.client.update(body)
        except (ConflictError, AlreadyExistsError, NotFoundError) as exc:
            raise TemporaryError(f"endpoints {namespace}/{name}: {exc}") from exc
        except ForbiddenError:
            return None  # the namespace is being deleted, with its Services
        return None


def services_of(services: Iterable[JSON], pod: JSON, old: JSON | None) -> list[Key]:
    """Keys of the Services whose selector picks ``pod`` now or picked it before."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    out = []
    for svc in services:
        md = svc.get("metadata") or {}
        if md.get("namespace") != ns:
            continue
        sel = sb.selector(svc)
        if sb.matches(sel, pod) or sb.matches(sel, old):
            out.append((ns, md.get("name", "")))
    return out
