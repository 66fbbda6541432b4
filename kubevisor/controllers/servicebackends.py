"""Which pods back a Service, on which ports, in which state: the pure rules
the Endpoints and EndpointSlice controllers share (kube's
endpointsliceutil and podutil.FindPort).

A pod backs a Service when the Service has a selector, the pod is in its
namespace, matches the selector, has an IP and is not terminal (Succeeded
or Failed). Each Service port maps to a pod port: a number as is, a name
through the pod's container ports of the same protocol (a pod without that
named port is left out of that port). Called by
:mod:`kubevisor.controllers.endpoints` and
:mod:`kubevisor.controllers.endpointslices`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

#: The annotation both controllers set: when the change they reflect happened.
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
HEADLESS = "service.kubernetes.io/headless"


def selector(svc: JSON) -> dict[str, str]:
    sel = (svc.get("spec") or {}).get("selector")
    return dict(sel) if isinstance(sel, dict) else {}


def matches(sel: dict[str, str], pod: JSON | None) -> bool:
    if not sel or pod is None:
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in sel.items())


def is_headless(svc: JSON) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def is_ready(pod: JSON) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def is_terminating(pod: JSON) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_ip(pod: JSON, family: str = "IPv4") -> str:
    """The pod's address of ``family`` ("" if none)."""
    status = pod.get("status") or {}
    candidates = [p.get("ip") for p in status.get("podIPs") or () if isinstance(p, dict)]
    if status.get("podIP"):
        candidates.insert(0, status["podIP"])
    for ip in candidates:
        if isinstance(ip, str) and ip and ((":" in ip) == (family == "IPv6")):
            return ip
    return ""


def should_be_endpoint(pod: JSON, *, include_terminating: bool) -> bool:
    """kube's ShouldPodBeInEndpoints."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if not pod_ip(pod) and not pod_ip(pod, "IPv6"):
        return False
    return include_terminating or not is_terminating(pod)


def find_port(pod: JSON, service_port: JSON) -> int | None:
    """The pod port a Service port leads to (None: the pod has no such named port)."""
    target = service_port.get("targetPort")
    if target is None or target == 0:
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                value = port.get("containerPort")
                return int(value) if isinstance(value, int) else None
    return None


def target_ref(pod: JSON) -> JSON:
    meta = pod.get("metadata") or {}
    return {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
            "uid": meta.get("uid", "")}


def hostname(pod: JSON, svc: JSON) -> str:
    """The pod's hostname when its subdomain is this Service (kube's ShouldSetHostname)."""
    spec = pod.get("spec") or {}
    pmeta, smeta = pod.get("metadata") or {}, svc.get("metadata") or {}
    if spec.get("hostname") and spec.get("subdomain") == smeta.get("name") and \
            pmeta.get("namespace") == smeta.get("namespace"):
        return str(spec["hostname"])
    return ""


@dataclass(frozen=True, slots=True)
class Backend:
    """One pod behind a Service: its address and the ports it serves."""

    pod: JSON
    ip: str
    ready: bool  # Ready and not terminating, or the Service publishes not-ready addresses
    serving: bool  # Ready, terminating or not (or published anyway)
    terminating: bool
    ports: tuple[tuple[str, int, str, str], ...]  # (name, port, protocol, appProtocol)


def backends(svc: JSON, pods: Iterable[JSON], *, include_terminating: bool,
             family: str = "IPv4") -> list[Backend]:
    """The pods behind ``svc`` (those its selector picks) with their ports."""
    sel = selector(svc)
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    out = []
    for pod in pods:
        if not matches(sel, pod):
            continue
        if not should_be_endpoint(pod, include_terminating=include_terminating or publish):
            continue
        ip = pod_ip(pod, family)
        if not ip:
            continue
        ports = []
        for sp in spec.get("ports") or ():
            number = find_port(pod, sp)
            if number is None:
                continue
            ports.append((sp.get("name") or "", number, sp.get("protocol") or "TCP",
                          sp.get("appProtocol") or ""))
        if spec.get("ports") and not ports:
            continue
        serving = publish or is_ready(pod)
        terminating = is_terminating(pod)
        out.append(Backend(pod=pod, ip=ip, ready=publish or (serving and not terminating),
                           serving=serving, terminating=terminating, ports=tuple(ports)))
    return out


def service_labels(svc: JSON) -> dict[str, str]:
    """The Service's labels, plus the headless mark for a headless Service."""
    labels = dict((svc.get("metadata") or {}).get("labels") or {})
    if is_headless(svc):
        labels[HEADLESS] = ""
    else:
        labels.pop(HEADLESS, None)
    return labels


def trigger_time(svc: JSON, pods: Iterable[JSON]) -> str:
    """The latest moment one of these objects changed state: a Service's
    creation, a pod's creation or Ready transition (a deletion is seen by
    the caller, as "now")."""
    times = [(svc.get("metadata") or {}).get("creationTimestamp") or ""]
    for pod in pods:
        meta = pod.get("metadata") or {}
        times.append(meta.get("creationTimestamp") or "")
        for cond in (pod.get("status") or {}).get("conditions") or ():
            if cond.get("type") == "Ready":
                times.append(cond.get("lastTransitionTime") or "")
    return max(t for t in times if isinstance(t, str)) if times else ""


class ByNamespace:
    """An informer's objects by namespace, kept from its events (register
    :meth:`on_event` as a handler before the ones that read it), so a
    reconcile reads one namespace's pods instead of every pod."""

    def __init__(self) -> None:
        self._by_ns: dict[str, dict[str, JSON]] = {}

    def on_event(self, etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj.get("metadata") or {}
        ns, name = md.get("namespace") or "", md.get("name") or ""
        if etype == "DELETED":
            objs = self._by_ns.get(ns)
            if objs is not None:
                objs.pop(name, None)
                if not objs:
                    del self._by_ns[ns]
        else:
            self._by_ns.setdefault(ns, {})[name] = obj

    def in_namespace(self, namespace: str) -> list[JSON]:
        return list((self._by_ns.get(namespace) or {}).values())
