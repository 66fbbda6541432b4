"""The VirtualMachineService controller against a real apiserver, with the
load balancer, endpoints and garbage collector controllers running beside
it (a pool of TEST-NET-2 addresses; nothing is sent anywhere). The test
plays the node agent: it writes the VMs' status (power state, IP, Ready)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client, NotFoundError
from kubevisor.controllers.manager import run_controllers_with
from tests.client.live import live_apiserver, require_apiserver
from tests.controllers.nodeplay import eventually as _eventually
from tests.controllers.nodeplay import now

JSON = dict[str, Any]
NS = "vms"
VMOP = "vmoperator.vmware.com/v1alpha6"
POOL = "198.51.100.20-198.51.100.21"
CONTROLLERS = ["garbagecollector", "endpoint", "loadbalancer", "vmservice"]

eventually = functools.partial(_eventually, timeout=20.0)


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    require_apiserver()
    monkeypatch.setenv("KUBEVISOR_LOADBALANCER_POOL", POOL)
    async with live_apiserver(tmp_path) as live, Client.from_kubeconfig(live.kubeconfig) as c:
        await c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        stop = asyncio.Event()
        async with Client.from_kubeconfig(live.kubeconfig) as ctl_client:
            manager = asyncio.create_task(run_controllers_with(ctl_client, stop,
                                                               names=CONTROLLERS))
            try:
                yield c
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(manager, 10)


async def make_vm(api: Client, name: str, labels: dict[str, str], **spec: Any) -> JSON:
    return await api.create({"apiVersion": VMOP, "kind": "VirtualMachine",
                             "metadata": {"name": name, "namespace": NS, "labels": labels},
                             "spec": {"className": "small", "imageName": "img", **spec}})


async def set_vm(api: Client, name: str, *, ip: str | None, power: str = "PoweredOn",
                 ready: str | None = None) -> None:
    """What the node agent reports."""
    status: JSON = {"powerState": power, "nodeName": "node-a",
                    "network": {"primaryIP4": ip} if ip else None}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "Probe",
                                 "message": "", "lastTransitionTime": now()}]
    await api.patch(VMOP, "VirtualMachine", name, {"status": status}, namespace=NS,
                    subresource="status")


async def make_vmservice(api: Client, name: str, type_: str = "ClusterIP",
                         selector: dict[str, str] | None = None) -> JSON:
    return await api.create({
        "apiVersion": VMOP, "kind": "VirtualMachineService",
        "metadata": {"name": name, "namespace": NS, "labels": {"tier": "front"}},
        "spec": {"type": type_, "selector": selector or {"app": "web"},
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]},
    })


async def get(api: Client, api_version: str, kind: str, name: str) -> JSON | None:
    try:
        return await api.get(api_version, kind, name, namespace=NS)
    except NotFoundError:
        return None


async def addresses(api: Client, name: str) -> tuple[list[str], list[str]]:
    ep = await get(api, "v1", "Endpoints", name) or {}
    ready = [a["ip"] for s in ep.get("subsets") or () for a in s.get("addresses") or ()]
    waiting = [a["ip"] for s in ep.get("subsets") or () for a in s.get("notReadyAddresses") or ()]
    return sorted(ready), sorted(waiting)


def endpoints_are(api: Client, name: str, ready: list[str],
                  waiting: tuple[str, ...] | list[str] = ()) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await addresses(api, name) == (sorted(ready), sorted(waiting))
    return check


async def test_service_and_endpoints_follow_the_vms(api: Client) -> None:
    await make_vm(api, "web-1", {"app": "web"})
    await make_vm(api, "web-2", {"app": "web"})
    await make_vm(api, "db-1", {"app": "db"})
    await set_vm(api, "web-1", ip="10.244.0.11")
    await set_vm(api, "db-1", ip="10.244.0.30")
    vmsvc = await make_vmservice(api, "web")

    async def service() -> JSON | None:
        return await get(api, "v1", "Service", "web")
    svc = await eventually(service, what="the Service")
    assert svc["spec"]["type"] == "ClusterIP" and "selector" not in svc["spec"]
    assert svc["spec"]["clusterIP"]
    assert svc["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80,
                                     "targetPort": 8080}]
    assert svc["metadata"]["labels"] == {"tier": "front"}
    [owner] = svc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == \
        ("VirtualMachineService", vmsvc["metadata"]["uid"], True)

    await eventually(endpoints_are(api, "web", ["10.244.0.11"]), what="web-1 listed")
    ep = await get(api, "v1", "Endpoints", "web")
    assert ep is not None
    [subset] = ep["subsets"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    ref = subset["addresses"][0]["targetRef"]
    assert (ref["kind"], ref["name"]) == ("VirtualMachine", "web-1")
    assert subset["addresses"][0]["nodeName"] == "node-a"

    # a second VM gets an IP; the first one powers off, then moves
    await set_vm(api, "web-2", ip="10.244.0.12")
    await eventually(endpoints_are(api, "web", ["10.244.0.11", "10.244.0.12"]),
                     what="web-2 listed")
    await set_vm(api, "web-1", ip="10.244.0.11", power="PoweredOff")
    await eventually(endpoints_are(api, "web", ["10.244.0.12"], ["10.244.0.11"]),
                     what="web-1 not ready once off")
    await set_vm(api, "web-1", ip="10.244.0.13")
    await eventually(endpoints_are(api, "web", ["10.244.0.12", "10.244.0.13"]),
                     what="web-1 back at a new IP")
    await set_vm(api, "web-2", ip="10.244.0.12", ready="False")
    await eventually(endpoints_are(api, "web", ["10.244.0.13"], ["10.244.0.12"]),
                     what="web-2 not ready")
    await set_vm(api, "web-2", ip=None)
    await eventually(endpoints_are(api, "web", ["10.244.0.13"]), what="web-2 without an IP")

    # a VM's labels change; then the service's selector does
    await api.patch(VMOP, "VirtualMachine", "web-1",
                    {"metadata": {"labels": {"app": "other"}}}, namespace=NS)
    await eventually(endpoints_are(api, "web", []), what="web-1 deselected")
    await api.patch(VMOP, "VirtualMachineService", "web",
                    {"spec": {"selector": {"app": "db"}}}, namespace=NS)
    await eventually(endpoints_are(api, "web", ["10.244.0.30"]), what="selector moved to db")

    # the VMService's condition sums it up
    async def ready_condition() -> JSON | None:
        obj = await get(api, VMOP, "VirtualMachineService", "web") or {}
        for cond in (obj.get("status") or {}).get("conditions") or ():
            if cond["type"] == "ServiceReady" and cond["status"] == "True" and \
                    "1 ready" in cond["message"]:
                return cond
        return None
    await eventually(ready_condition, what="ServiceReady True")

    # hand-edits are undone; the endpoints controller leaves the Endpoints alone
    await api.patch("v1", "Service", "web", {"spec": {"selector": {"app": "web"}}},
                    namespace=NS)
    async def no_selector() -> bool:
        svc = await service() or {}
        return "selector" not in (svc.get("spec") or {})
    await eventually(no_selector, what="the stray selector removed")
    await eventually(endpoints_are(api, "web", ["10.244.0.30"]), what="endpoints settle")
    await asyncio.sleep(1.0)
    assert await addresses(api, "web") == (["10.244.0.30"], [])

    # deleting the VMService takes the Service and Endpoints with it
    await api.delete(VMOP, "VirtualMachineService", "web", namespace=NS)

    async def all_gone() -> bool:
        return await service() is None and await get(api, "v1", "Endpoints", "web") is None
    await eventually(all_gone, what="Service and Endpoints collected")


async def test_load_balancer_address_reaches_the_vmservice_status(api: Client) -> None:
    await make_vm(api, "web-1", {"app": "web"})
    await set_vm(api, "web-1", ip="10.244.0.11")
    await make_vmservice(api, "front", "LoadBalancer")

    async def lb_status() -> list[JSON]:
        obj = await get(api, VMOP, "VirtualMachineService", "front") or {}
        return list(((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])
    ingress = await eventually(lb_status, what="the VMService's load balancer status")
    assert ingress == [{"ip": "198.51.100.20"}]
    svc = await get(api, "v1", "Service", "front")
    assert svc is not None and svc["spec"]["type"] == "LoadBalancer"
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == "198.51.100.20"
    await eventually(endpoints_are(api, "front", ["10.244.0.11"]), what="endpoints")
    obj = await get(api, VMOP, "VirtualMachineService", "front")
    assert obj is not None
    [cond] = obj["status"]["conditions"]
    assert cond["status"] == "True" and "198.51.100.20" in cond["message"]

    # back to ClusterIP: the address is released and the status cleared
    await api.patch(VMOP, "VirtualMachineService", "front", {"spec": {"type": "ClusterIP"}},
                    namespace=NS)

    async def cleared() -> bool:
        obj = await get(api, VMOP, "VirtualMachineService", "front") or {}
        svc = await get(api, "v1", "Service", "front") or {}
        return not (obj.get("status") or {}).get("loadBalancer") and \
            svc.get("spec", {}).get("type") == "ClusterIP" and \
            not (svc.get("status") or {}).get("loadBalancer", {}).get("ingress")
    await eventually(cleared, what="load balancer status cleared")


async def test_a_foreign_service_of_that_name_is_reported_not_taken(api: Client) -> None:
    await api.create({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                      "metadata": {"name": "owner", "namespace": NS},
                      "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}},
                               "template": {"metadata": {"labels": {"a": "b"}},
                                            "spec": {"containers": [{"name": "c",
                                                                     "image": "x"}]}}}})
    rs = await api.get("apps/v1", "ReplicaSet", "owner", namespace=NS)
    await api.create({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "taken", "namespace": NS, "ownerReferences": [
                          {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "owner",
                           "uid": rs["metadata"]["uid"], "controller": True}]},
                      "spec": {"selector": {"a": "b"}, "ports": [{"port": 1}]}})
    await make_vmservice(api, "taken")

    async def conflict() -> JSON | None:
        obj = await get(api, VMOP, "VirtualMachineService", "taken") or {}
        for cond in (obj.get("status") or {}).get("conditions") or ():
            if cond["reason"] == "ServiceNameConflict":
                return cond
        return None
    cond = await eventually(conflict, what="the conflict reported")
    assert cond["status"] == "False" and "ReplicaSet" in cond["message"]
    svc = await get(api, "v1", "Service", "taken")
    assert svc is not None and svc["spec"]["selector"] == {"a": "b"}
