"""What a VirtualMachineService should look like in core objects: pure
functions of (VirtualMachineService, VirtualMachines, current objects).

- :func:`desired_service`: a Service of the same name and namespace,
  controlled by the VirtualMachineService (ownerReference with
  ``controller: true``, so it goes with it), with its type, ports
  (``targetPort`` a number), ``loadBalancerIP``, ``loadBalancerSourceRanges``,
  ``externalName`` and IP families copied, its labels and annotations
  merged in, and no selector: the Endpoints are ours, not the Endpoints
  controller's. What the apiserver filled (cluster IP, node ports) is kept.
- :func:`desired_endpoints`: an Endpoints of the same name listing the VMs
  of the namespace that match ``spec.selector`` and report
  ``status.network.primaryIP4`` (VMs being deleted are left out). A VM is a
  ready address when it is PoweredOn and, if it has a readiness probe, its
  ``Ready`` condition is True (without a probe: unless the node reported
  ``Ready`` False); the others are ``notReadyAddresses``. Each address has
  a ``targetRef`` to its VM and the VM's node. Ports are the service's,
  named alike, with the VM-side number (what the node's service proxy
  matches by name).
- :func:`desired_status`: ``status.loadBalancer`` copied from the Service
  (LoadBalancer type only) and a ``ServiceReady`` condition saying what is
  missing.

Each returns None when nothing needs writing. Called by
:mod:`kubevisor.controllers.vmservice.controller`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubevisor.controllers.conditions import find_condition, set_condition

JSON = dict[str, Any]

GROUP = "vmoperator.vmware.com"
API_VERSION = f"{GROUP}/v1alpha6"
KIND = "VirtualMachineService"
VM_KIND = "VirtualMachine"
SERVICE_READY = "ServiceReady"
#: Metadata of the VirtualMachineService not copied to its Service.
NOT_COPIED = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _md(obj: JSON | None) -> JSON:
    return (obj or {}).get("metadata") or {}


def _spec(obj: JSON | None) -> JSON:
    return (obj or {}).get("spec") or {}


def owner_reference(vmsvc: JSON) -> JSON:
    md = _md(vmsvc)
    return {"apiVersion": API_VERSION, "kind": KIND, "name": md.get("name", ""),
            "uid": md.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def controller_ref(obj: JSON | None) -> JSON | None:
    for ref in _md(obj).get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def controlled_by_other(obj: JSON | None, vmsvc: JSON) -> bool:
    """``obj`` has a controller that is not ``vmsvc`` (we never take it over)."""
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") != _md(vmsvc).get("uid")


def _with_owner(refs: Iterable[JSON] | None, vmsvc: JSON) -> list[JSON]:
    """``refs`` with our controller reference (replacing an older one of
    ours, e.g. of a deleted and re-created VirtualMachineService)."""
    mine = owner_reference(vmsvc)
    out = [r for r in refs or () if not (r.get("kind") == KIND and r.get("name") == mine["name"]
                                          and str(r.get("apiVersion", "")).startswith(GROUP))]
    out.append(mine)
    return out


def service_type(vmsvc: JSON) -> str:
    return str(_spec(vmsvc).get("type") or "ClusterIP")


def _ports(vmsvc: JSON, current: JSON | None, typ: str) -> list[JSON]:
    node_ports = {p.get("name", ""): p.get("nodePort") for p in _spec(current).get("ports") or ()
                  if isinstance(p, dict) and p.get("nodePort")}
    out = []
    for p in _spec(vmsvc).get("ports") or ():
        port: JSON = {"name": p.get("name", ""), "protocol": p.get("protocol") or "TCP",
                      "port": p.get("port"), "targetPort": p.get("targetPort")}
        if not port["name"]:
            port.pop("name")
        kept = node_ports.get(p.get("name", ""))
        if typ in _NODE_PORT_TYPES and kept:
            port["nodePort"] = kept
        out.append(port)
    return out


def _merge_meta(body: JSON, vmsvc: JSON) -> None:
    md = body["metadata"]
    for field in ("labels", "annotations"):
        merged = dict(md.get(field) or {})
        merged.update({k: v for k, v in (_md(vmsvc).get(field) or {}).items()
                       if k not in NOT_COPIED})
        if merged:
            md[field] = merged
        else:
            md.pop(field, None)
    md["ownerReferences"] = _with_owner(md.get("ownerReferences"), vmsvc)


def desired_service(vmsvc: JSON, current: JSON | None) -> JSON | None:
    """The Service to create or update for ``vmsvc`` (None: ``current`` is right)."""
    md, spec = _md(vmsvc), _spec(vmsvc)
    typ = service_type(vmsvc)
    if current is None:
        body: JSON = {"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": md.get("name"), "namespace": md.get("namespace")},
                      "spec": {}}
        if spec.get("clusterIp") and typ != "ExternalName":
            body["spec"]["clusterIP"] = spec["clusterIp"]
    else:
        body = copy.deepcopy(current)
        body.pop("status", None)
    _merge_meta(body, vmsvc)
    out = body.setdefault("spec", {})
    previous = out.get("type") or "ClusterIP"
    out["type"] = typ
    out.pop("selector", None)
    out["ports"] = _ports(vmsvc, current, typ)
    for src, dst in (("loadBalancerIP", "loadBalancerIP"),
                     ("loadBalancerSourceRanges", "loadBalancerSourceRanges"),
                     ("externalName", "externalName")):
        if spec.get(src) and (typ == "LoadBalancer" or src == "externalName"):
            out[dst] = copy.deepcopy(spec[src])
        else:
            out.pop(dst, None)
    if typ == "ExternalName":
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy",
                      "internalTrafficPolicy", "sessionAffinity"):
            out.pop(field, None)
    else:
        if previous == "ExternalName" and current is not None:
            out.pop("clusterIP", None)  # to be allocated
            out.pop("clusterIPs", None)
        if spec.get("ipFamilies"):
            out["ipFamilies"] = list(spec["ipFamilies"])
        if spec.get("ipFamilyPolicy"):
            out["ipFamilyPolicy"] = spec["ipFamilyPolicy"]
    if typ not in _NODE_PORT_TYPES:
        out.pop("externalTrafficPolicy", None)
        out.pop("healthCheckNodePort", None)
    if typ != "LoadBalancer":
        out.pop("allocateLoadBalancerNodePorts", None)
    if current is not None and _same(body, current):
        return None
    return body


def _same(body: JSON, current: JSON) -> bool:
    cur = copy.deepcopy(current)
    cur.pop("status", None)
    return body == cur


# -- Endpoints ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Backend:
    """One VM behind the service."""

    ip: str
    ready: bool
    vm: JSON


def selector(vmsvc: JSON) -> dict[str, str]:
    sel = _spec(vmsvc).get("selector")
    return dict(sel) if isinstance(sel, dict) else {}


def matches(sel: dict[str, str], vm: JSON | None) -> bool:
    if not sel or vm is None:
        return False
    labels = _md(vm).get("labels") or {}
    return all(labels.get(k) == v for k, v in sel.items())


def has_probe(vm: JSON) -> bool:
    probe = _spec(vm).get("readinessProbe") or {}
    return bool(probe.get("tcpSocket") or probe.get("guestHeartbeat") or probe.get("guestInfo"))


def backend(vm: JSON) -> Backend | None:
    """``vm`` as an address (None: not one: being deleted or no IP yet)."""
    if _md(vm).get("deletionTimestamp"):
        return None
    status = vm.get("status") or {}
    ip = str((status.get("network") or {}).get("primaryIP4") or "")
    if not ip:
        return None
    ready = status.get("powerState") == "PoweredOn"
    if ready:
        cond = find_condition(status.get("conditions"), "Ready")
        if has_probe(vm):
            ready = cond is not None and cond.get("status") == "True"
        else:
            ready = cond is None or cond.get("status") != "False"
    return Backend(ip=ip, ready=ready, vm=vm)


def backends(vmsvc: JSON, vms: Iterable[JSON]) -> list[Backend]:
    """The addresses of the VMs ``vmsvc`` selects, by IP."""
    sel = selector(vmsvc)
    ns = _md(vmsvc).get("namespace")
    out = [b for vm in vms if _md(vm).get("namespace") == ns and matches(sel, vm)
           for b in [backend(vm)] if b is not None]
    out.sort(key=lambda b: (b.ip, _md(b.vm).get("uid", "")))
    return out


def _address(b: Backend) -> JSON:
    md = _md(b.vm)
    addr: JSON = {"ip": b.ip,
                  "targetRef": {"apiVersion": API_VERSION, "kind": VM_KIND,
                                "namespace": md.get("namespace"), "name": md.get("name"),
                                "uid": md.get("uid")}}
    node = (b.vm.get("status") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    return addr


def endpoint_ports(vmsvc: JSON) -> list[JSON]:
    out = []
    for p in _spec(vmsvc).get("ports") or ():
        port: JSON = {"port": p.get("targetPort"), "protocol": p.get("protocol") or "TCP"}
        if p.get("name"):
            port = {"name": p["name"], **port}
        out.append(port)
    return out


def desired_subsets(vmsvc: JSON, vms: Iterable[JSON]) -> list[JSON]:
    chosen = backends(vmsvc, vms)
    ports = endpoint_ports(vmsvc)
    if not chosen or not ports:
        return []
    subset: JSON = {}
    ready = [_address(b) for b in chosen if b.ready]
    not_ready = [_address(b) for b in chosen if not b.ready]
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    subset["ports"] = ports
    return [subset]


def desired_endpoints(vmsvc: JSON, vms: Iterable[JSON], current: JSON | None,
                      service: JSON | None = None) -> JSON | None:
    """The Endpoints to create or update (None: ``current`` is right). A
    VirtualMachineService without a selector leaves Endpoints it does not
    control to the user, as a selector-less Service does."""
    md = _md(vmsvc)
    if not selector(vmsvc) and (current is None or controller_ref(current) is None):
        return None
    subsets = desired_subsets(vmsvc, vms)
    labels = dict(_md(service).get("labels") or {}) if service is not None else \
        {k: v for k, v in (md.get("labels") or {}).items()}
    if current is None:
        body: JSON = {"apiVersion": "v1", "kind": "Endpoints",
                      "metadata": {"name": md.get("name"), "namespace": md.get("namespace")}}
    else:
        body = copy.deepcopy(current)
    bmd = body["metadata"]
    if labels:
        bmd["labels"] = labels
    else:
        bmd.pop("labels", None)
    bmd["ownerReferences"] = _with_owner(bmd.get("ownerReferences"), vmsvc)
    if subsets:
        body["subsets"] = subsets
    else:
        body.pop("subsets", None)
    if current is not None and body == current:
        return None
    return body


# -- status ------------------------------------------------------------------

def ingress(service: JSON | None) -> list[JSON]:
    out = []
    for entry in ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") \
            or ():
        if isinstance(entry, dict):
            item = {k: entry[k] for k in ("ip", "hostname") if entry.get(k)}
            if item:
                out.append(item)
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the Service could not be written: the ServiceReady reason and message."""

    reason: str
    message: str


def ready_condition(vmsvc: JSON, service: JSON | None, endpoints: JSON | None,
                    problem: Problem | None) -> tuple[str, str, str]:
    """(status, reason, message) of ServiceReady."""
    name = _md(vmsvc).get("name", "")
    if problem is not None:
        return "False", problem.reason, problem.message
    if service is None:
        return "False", "ServiceNotCreated", f"Service {name!r} is not created yet"
    typ = service_type(vmsvc)
    if typ == "LoadBalancer" and not ingress(service):
        return ("False", "LoadBalancerPending",
                f"Service {name!r} waits for a load balancer address; if this lasts, see the "
                f"Service's events (kubectl describe service {name})")
    subsets = (endpoints or {}).get("subsets") or []
    ready = sum(len(s.get("addresses") or ()) for s in subsets)
    not_ready = sum(len(s.get("notReadyAddresses") or ()) for s in subsets)
    if typ == "ExternalName":
        where = f"points at {_spec(service).get('externalName', '')}"
    elif typ == "LoadBalancer":
        where = f"has load balancer address {', '.join(i.get('ip') or i.get('hostname', '') for i in ingress(service))}"
    else:
        where = f"has cluster IP {_spec(service).get('clusterIP', '')}"
    if not selector(vmsvc):
        backs = "no selector: its Endpoints are managed by you"
    else:
        backs = f"{ready} ready and {not_ready} not ready VM addresses"
    return "True", "ServiceReady", f"Service {name!r} {where}; {backs}"


def desired_status(vmsvc: JSON, service: JSON | None, endpoints: JSON | None, *, now: str,
                   problem: Problem | None = None) -> JSON | None:
    """The VirtualMachineService's new status (None: unchanged)."""
    current = vmsvc.get("status") or {}
    status = copy.deepcopy(current)
    lb = {"ingress": ingress(service)} if service_type(vmsvc) == "LoadBalancer" and \
        ingress(service) else {}
    if problem is None or lb:
        status["loadBalancer"] = lb
    if not status.get("loadBalancer"):
        status.pop("loadBalancer", None)
    state, reason, message = ready_condition(vmsvc, service, endpoints, problem)
    generation = _md(vmsvc).get("generation")
    conditions, _ = set_condition(status.get("conditions"), type=SERVICE_READY, status=state,
                                  reason=reason, message=message, now=now,
                                  observed_generation=generation if isinstance(generation, int)
                                  else None)
    status["conditions"] = conditions
    if status == current:
        return None
    return status
