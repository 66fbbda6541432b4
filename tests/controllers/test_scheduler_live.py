"""The scheduler running in the controller manager against the real
in-process apiserver: Nodes are plain objects with capacity (no agent),
pods are bound, or stay Pending with kube's message and event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubevisor.client import Client

NS = "sched"
GI = 1024**3


@pytest.fixture(autouse=True)
async def namespace(api: Client) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
         labels: dict[str, str] | None = None, taints: list[dict] | None = None,
         unschedulable: bool = False) -> dict:
    alloc = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": spec, "status": {"capacity": alloc, "allocatable": alloc}}


def pod(name: str, *, cpu: str = "100m", memory: str = "128Mi", **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": spec.pop("labels", {})},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": cpu, "memory": memory}}}], **spec}}


async def bound_node(api: Client, name: str, timeout: float = 30.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await api.get("v1", "Pod", name, namespace=NS)
        if got["spec"].get("nodeName"):
            return str(got["spec"]["nodeName"])
        assert loop.time() < deadline, f"pod {name} not bound: {got.get('status')}"
        await asyncio.sleep(0.05)


async def scheduled_condition(api: Client, name: str, message: str,
                              timeout: float = 30.0) -> dict:
    """The pod's PodScheduled=False condition once it says ``message`` (an
    earlier attempt may have seen fewer nodes: the next one rewrites it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = None
    while True:
        got = await api.get("v1", "Pod", name, namespace=NS)
        for cond in got.get("status", {}).get("conditions") or ():
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                seen = dict(cond)
                if cond["message"] == message:
                    return seen
        assert loop.time() < deadline, f"pod {name}: {seen} is not {message!r}"
        await asyncio.sleep(0.05)


async def events_of(api: Client, name: str, reason: str, message: str | None = None) -> list[dict]:
    lst = await api.list("v1", "Event", namespace=NS,
                         field_selector=f"involvedObject.name={name},reason={reason}")
    return [e for e in lst["items"] if message is None or e["message"] == message]


async def wait_event(api: Client, name: str, reason: str, message: str | None = None,
                     timeout: float = 30.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (found := await events_of(api, name, reason, message)):
        assert loop.time() < deadline, f"no {reason} event for {name}"
        await asyncio.sleep(0.05)
    return found[0]


async def test_binds_to_the_node_that_fits(api: Client) -> None:
    await api.create(node("small", memory="1Gi"))
    await api.create(node("big", memory="16Gi"))
    await api.create(pod("p", memory="4Gi"))
    assert await bound_node(api, "p") == "big"
    got = await api.get("v1", "Pod", "p", namespace=NS)
    cond = [c for c in got["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond[0]["status"] == "True"
    event = await wait_event(api, "p", "Scheduled")
    assert event["message"] == f"Successfully assigned {NS}/p to big"
    assert event["source"]["component"] == "default-scheduler"
    assert event["type"] == "Normal"


async def test_unschedulable_then_a_big_node_arrives(api: Client) -> None:
    for i in range(3):
        await api.create(node(f"n{i}", memory="2Gi"))
    await api.create(pod("huge", memory="64Gi"))
    message = "0/3 nodes are available: 3 Insufficient memory."
    cond = await scheduled_condition(api, "huge", message)
    assert cond["reason"] == "Unschedulable"
    event = await wait_event(api, "huge", "FailedScheduling", message)
    assert event["type"] == "Warning"
    assert event["reportingComponent"] == "default-scheduler"
    assert event["source"]["component"] == "default-scheduler"
    assert not (await api.get("v1", "Pod", "huge", namespace=NS))["spec"].get("nodeName")
    await api.create(node("giant", memory="128Gi"))
    assert await bound_node(api, "huge") == "giant"
    # One FailedScheduling Event per message, its count bumped on retries.
    assert len(await events_of(api, "huge", "FailedScheduling", message)) == 1


async def test_mixed_reasons_message(api: Client) -> None:
    await api.create(node("tainted", taints=[{"key": "node-role", "value": "x",
                                              "effect": "NoSchedule"}]))
    await api.create(node("cordoned", unschedulable=True))
    await api.create(node("tiny", cpu="100m"))
    await api.create(node("tiny-small", cpu="100m", memory="1Gi"))
    await api.create(pod("picky", cpu="1", memory="4Gi"))
    # Counted per reason, sorted as strings; a node short of two resources counts twice.
    await scheduled_condition(api, "picky", (
        "0/4 nodes are available: 1 Insufficient memory, "
        "1 node(s) had untolerated taint {node-role: x}, 1 node(s) were unschedulable, "
        "2 Insufficient cpu."))


async def test_cordon_taints_and_selectors(api: Client) -> None:
    await api.create(node("cordoned", unschedulable=True))
    await api.create(node("tainted", taints=[{"key": "dedicated", "value": "gpu",
                                              "effect": "NoSchedule"}]))
    await api.create(node("ssd", labels={"disk": "ssd"}))
    await api.create(node("plain"))
    # Only the plain and ssd nodes take an ordinary pod.
    for i in range(4):
        await api.create(pod(f"o{i}"))
    assert {await bound_node(api, f"o{i}") for i in range(4)} <= {"plain", "ssd"}
    await api.create(pod("sel", nodeSelector={"disk": "ssd"}))
    assert await bound_node(api, "sel") == "ssd"
    await api.create(pod("tol", nodeSelector={"kubernetes.io/hostname": "tainted"},
                         tolerations=[{"key": "dedicated", "operator": "Equal",
                                       "value": "gpu", "effect": "NoSchedule"}]))
    assert await bound_node(api, "tol") == "tainted"
    await api.create(pod("cordon-ok", nodeSelector={"kubernetes.io/hostname": "cordoned"},
                         tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                       "operator": "Exists", "effect": "NoSchedule"}]))
    assert await bound_node(api, "cordon-ok") == "cordoned"
    await api.create(pod("nope", nodeSelector={"kubernetes.io/hostname": "cordoned"}))
    await scheduled_condition(api, "nope", (
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
        "1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector."))
    # Uncordon: the pod gets its node.
    await api.patch("v1", "Node", "cordoned", {"spec": {"unschedulable": False}})
    assert await bound_node(api, "nope") == "cordoned"


async def test_anti_affinity_spreads_replicas(api: Client) -> None:
    for i in range(3):
        await api.create(node(f"z{i}"))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "web"}},
        "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(3):
        await api.create(pod(f"web-{i}", labels={"app": "web"}, affinity=anti))
    nodes = [await bound_node(api, f"web-{i}") for i in range(3)]
    assert sorted(nodes) == ["z0", "z1", "z2"]
    await api.create(pod("web-3", labels={"app": "web"}, affinity=anti))
    # The placed replicas' own terms refuse it first, as upstream checks them first.
    await scheduled_condition(api, "web-3", (
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."))


async def test_repeated_events_bump_the_count(api: Client) -> None:
    from kubevisor.controllers.events import EventRecorder

    recorder = EventRecorder(api, "default-scheduler")
    ref = {"kind": "Pod", "apiVersion": "v1", "namespace": NS, "name": "ghost", "uid": "u-1"}
    for _ in range(3):
        await recorder.write(ref, "Warning", "FailedScheduling", "0/1 nodes are available: x.")
    await recorder.write(ref, "Warning", "FailedScheduling", "0/2 nodes are available: y.")
    found = await events_of(api, "ghost", "FailedScheduling")
    by_message = {e["message"]: e for e in found}
    assert len(found) == 2
    assert by_message["0/1 nodes are available: x."]["count"] == 3
    assert by_message["0/2 nodes are available: y."]["count"] == 1


async def test_virtual_machines_placed_on_a_node_hold_their_class_resources(api: Client) -> None:
    vm_api = "vmoperator.vmware.com/v1alpha6"
    await api.create(node("vmhost", cpu="2"))
    await api.create({"apiVersion": vm_api, "kind": "VirtualMachineClass",
                      "metadata": {"name": "big", "namespace": NS},
                      "spec": {"hardware": {"cpus": 2, "memory": "1Gi"}}})
    vm = await api.create({"apiVersion": vm_api, "kind": "VirtualMachine",
                           "metadata": {"name": "vm-1", "namespace": NS},
                           "spec": {"className": "big", "imageName": "none"}})
    vm["status"] = {"nodeName": "vmhost"}  # placed (the node is not Ready: the VM controller won't)
    await api.update(vm, subresource="status")
    await api.create(pod("after-vm", cpu="500m"))
    await scheduled_condition(api, "after-vm", "0/1 nodes are available: 1 Insufficient cpu.")
    await api.delete(vm_api, "VirtualMachine", "vm-1", namespace=NS)
    # the VM controller put its host-cleanup finalizer on the placed VM; the
    # node agent would remove it once QEMU is gone: until then it holds the node
    await asyncio.sleep(0.5)
    assert not (await api.get("v1", "Pod", "after-vm", namespace=NS))["spec"].get("nodeName")
    await api.patch(vm_api, "VirtualMachine", "vm-1", {"metadata": {"finalizers": None}},
                    namespace=NS)
    assert await bound_node(api, "after-vm") == "vmhost"
