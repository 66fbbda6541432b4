"""The VM controller in the controller manager against the real in-process
apiserver: Nodes are plain objects created through the API (no node
agent), images are published as ``kubevisor image add`` publishes them.
VMs are placed on a node that fits, stay unplaced with kube-scheduler's
message when none does, get conditions naming what is missing and recover
when it appears, carry the host-cleanup finalizer once placed, and count
against node capacity next to pods."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubevisor.api.vmoperator import resolve
from kubevisor.client import Client, ConflictError, NotFoundError
from tests.controllers.nodeplay import eventually, now

NS = "vms"
V = "vmoperator.vmware.com/v1alpha6"
VM = "VirtualMachine"
JSON = dict[str, Any]


@pytest.fixture(autouse=True)
async def namespace(api: Client) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", ready: bool = True) -> JSON:
    alloc = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name},
                         "annotations": {"vmoperator.kubevisor.io/accel": "tcg"}},
            "spec": {},
            "status": {"capacity": alloc, "allocatable": alloc, "conditions": [{
                "type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}}


async def make_class(api: Client, name: str, *, cpus: int = 1, memory: str = "1Gi",
                     requests: JSON | None = None) -> None:
    spec: JSON = {"hardware": {"cpus": cpus, "memory": memory}}
    if requests:
        spec["policies"] = {"resources": {"requests": requests}}
    await api.create({"apiVersion": V, "kind": "VirtualMachineClass",
                      "metadata": {"name": name, "namespace": NS}, "spec": spec})


async def make_image(api: Client, name: str, *, kind: str = "ClusterVirtualMachineImage",
                     digest: str | None = "sha256:" + "ab" * 32, ready: bool = True) -> JSON:
    meta: JSON = {"name": name}
    if kind == "VirtualMachineImage":
        meta["namespace"] = NS
    if digest:
        meta["annotations"] = {resolve.DIGEST_ANNOTATION: digest}
    obj = await api.create({"apiVersion": V, "kind": kind, "metadata": meta, "spec": {}})
    obj["status"] = {"type": "qcow2", "conditions": [{
        "type": "Ready", "status": "True" if ready else "False",
        "reason": "Imported" if ready else "Importing", "message": "",
        "lastTransitionTime": now()}]}
    return await api.update_status(obj)


def vm(name: str, *, class_name: str = "small", image: str = "deb", **spec: Any) -> JSON:
    return {"apiVersion": V, "kind": VM, "metadata": {"name": name, "namespace": NS},
            "spec": {"className": class_name, "imageName": image, **spec}}


async def get_vm(api: Client, name: str) -> JSON:
    return await api.get(V, VM, name, namespace=NS)


def cond(obj: JSON, type_: str) -> JSON:
    return resolve.condition(obj, type_) or {}


async def wait_vm(api: Client, name: str, check: Any, what: str, timeout: float = 20) -> JSON:
    async def look() -> JSON | None:
        obj = await get_vm(api, name)
        return obj if check(obj) else None
    return await eventually(look, timeout, f"vm {name}: {what}")


async def placed(api: Client, name: str) -> str:
    obj = await wait_vm(api, name, lambda o: (o.get("status") or {}).get("nodeName"), "placed")
    return str(obj["status"]["nodeName"])


async def condition_is(api: Client, name: str, type_: str, status: str, reason: str,
                       says: str = "") -> JSON:
    """The condition once it has this status and reason (and message part)."""
    def check(o: JSON) -> bool:
        c = cond(o, type_)
        return (c.get("status"), c.get("reason")) == (status, reason) and \
            says in c.get("message", "")
    obj = await wait_vm(api, name, check, f"{type_}={status}/{reason} {says}")
    return cond(obj, type_)


async def events_of(api: Client, name: str) -> list[JSON]:
    items = (await api.list("v1", "Event", namespace=NS))["items"]
    return [e for e in items if e["involvedObject"].get("name") == name
            and e["involvedObject"].get("kind") == VM]


async def drop_finalizer(api: Client, name: str) -> None:
    """What the node agent does once the host is clean."""
    while True:
        obj = await get_vm(api, name)
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or ()
                                         if f != resolve.FINALIZER]
        try:
            await api.update(obj)
            return
        except ConflictError:
            continue


async def test_placed_on_the_node_that_fits(api: Client) -> None:
    await api.create(node("tiny", cpu="1", memory="1Gi"))
    await api.create(node("big", cpu="8", memory="16Gi"))
    await make_class(api, "small", cpus=2, memory="2Gi")
    await make_image(api, "deb")
    await api.create(vm("web"))
    assert await placed(api, "web") == "big"
    obj = await get_vm(api, "web")
    assert resolve.FINALIZER in obj["metadata"]["finalizers"]
    for type_ in (resolve.CLASS_READY, resolve.IMAGE_READY, resolve.STORAGE_READY,
                  resolve.BOOTSTRAP_READY, "VirtualMachineScheduled"):
        assert cond(obj, type_).get("status") == "True", (type_, obj["status"])
    assert cond(obj, resolve.CLASS_READY)["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["class"] == {"apiVersion": V, "kind": "VirtualMachineClass",
                                      "name": "small"}
    scheduled = await eventually(lambda: events_of(api, "web"), 10, "Scheduled event")
    assert any(e["reason"] == "Scheduled" and e["message"] ==
               "Successfully assigned vms/web to big" for e in scheduled)
    # The agent watches by field selector.
    mine = await api.list(V, VM, field_selector="status.nodeName=big")
    assert [i["metadata"]["name"] for i in mine["items"]] == ["web"]
    # Placement is once: a class change does not move it.
    await api.create(node("bigger", cpu="64", memory="256Gi"))
    await make_class(api, "huge", cpus=32, memory="64Gi")
    obj["spec"]["className"] = "huge"
    await api.update(obj)
    await wait_vm(api, "web", lambda o: o["status"]["class"]["name"] == "huge", "class ref")
    assert (await get_vm(api, "web"))["status"]["nodeName"] == "big"


async def test_unschedulable_until_a_node_fits(api: Client) -> None:
    await api.create(node("n1", cpu="2"))
    await api.create(node("n2", cpu="2", ready=False))
    await make_class(api, "small", cpus=16, memory="1Gi")
    await make_image(api, "deb")
    await api.create(vm("fat"))
    message = ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had "
               "untolerated taint {node.kubernetes.io/not-ready: }.")
    # (An attempt made before both Nodes reached the cache may have counted one.)
    await condition_is(api, "fat", "VirtualMachineScheduled", "False", "Unschedulable",
                       says=message)
    obj = await get_vm(api, "fat")
    assert not (obj["status"].get("nodeName"))
    assert resolve.FINALIZER not in (obj["metadata"].get("finalizers") or ())
    async def warned() -> bool:
        return any((e["type"], e["reason"], e["message"]) ==
                   ("Warning", "FailedScheduling", message) for e in await events_of(api, "fat"))
    await eventually(warned, 10, "FailedScheduling event")
    # A node that fits arrives: the VM goes there.
    await api.create(node("n3", cpu="32", memory="64Gi"))
    assert await placed(api, "fat") == "n3"
    assert cond(await get_vm(api, "fat"), "VirtualMachineScheduled")["status"] == "True"


async def test_missing_class_image_secret_and_claim_then_recovery(api: Client) -> None:
    await api.create(node("n1"))
    await api.create(vm("w", class_name="medium", image="deb12", bootstrap={"cloudInit": {
        "rawCloudConfig": {"name": "userdata", "key": "user-data"}}},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]))
    c = await condition_is(api, "w", resolve.CLASS_READY, "False", "NotFound")
    assert c["message"] == 'VirtualMachineClass "medium" not found in namespace "vms"'
    c = await condition_is(api, "w", resolve.IMAGE_READY, "False", "NotFound")
    assert '"deb12"' in c["message"]
    c = await condition_is(api, "w", resolve.BOOTSTRAP_READY, "False", "SecretNotFound")
    assert 'Secret "userdata"' in c["message"]
    c = await condition_is(api, "w", resolve.STORAGE_READY, "False", "NotFound")
    assert c["message"] == 'PersistentVolumeClaim "data" not found'

    await make_class(api, "medium")
    await condition_is(api, "w", resolve.CLASS_READY, "True", "True")
    # An image without its content is not ready; nor is one not Ready.
    image = await make_image(api, "deb12", kind="VirtualMachineImage", digest=None)
    # (Published in two writes, it is first without a Ready condition.)
    await condition_is(api, "w", resolve.IMAGE_READY, "False", "NotReady",
                       says="kubevisor image add")
    assert not (await get_vm(api, "w"))["status"].get("nodeName")
    image["metadata"]["annotations"] = {resolve.DIGEST_ANNOTATION: "sha256:" + "cd" * 32}
    image = await api.update(image)
    await condition_is(api, "w", resolve.IMAGE_READY, "True", "True")
    # Class and image suffice for placement; storage and bootstrap wait on the node.
    assert await placed(api, "w") == "n1"

    secret = await api.create({"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": "userdata", "namespace": NS},
                               "stringData": {"other": "x"}})
    c = await condition_is(api, "w", resolve.BOOTSTRAP_READY, "False", "KeyNotFound")
    assert c["message"].startswith('Secret "userdata" has no key "user-data"')
    secret["stringData"] = {"user-data": "#cloud-config\n"}
    await api.update(secret)
    await condition_is(api, "w", resolve.BOOTSTRAP_READY, "True", "True")

    pvc = await api.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": "data", "namespace": NS},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "storageClassName": "manual-" + NS,
                                     "resources": {"requests": {"storage": "1Gi"}}}})
    c = await condition_is(api, "w", resolve.STORAGE_READY, "False", "NotBound")
    assert c["message"] == 'PersistentVolumeClaim "data" is Pending, not Bound'
    pvc["status"] = {"phase": "Bound"}
    await api.update_status(pvc)
    await condition_is(api, "w", resolve.STORAGE_READY, "True", "True")

    # The class goes away: the condition says so again (the VM stays where it is).
    await api.delete(V, "VirtualMachineClass", "medium", namespace=NS)
    await condition_is(api, "w", resolve.CLASS_READY, "False", "NotFound")
    assert (await get_vm(api, "w"))["status"]["nodeName"] == "n1"


async def gone(api: Client, name: str) -> bool:
    try:
        await get_vm(api, name)
    except NotFoundError:
        return True
    return False


async def test_finalizer_added_on_placement_and_removed_when_nobody_else_will(
        api: Client) -> None:
    await api.create(node("n1"))
    await make_image(api, "deb")
    # Never placed (no class): deleting it removes the finalizer it was created with.
    body = vm("unplaced", class_name="nope")
    body["metadata"]["finalizers"] = [resolve.FINALIZER]
    await api.create(body)
    await condition_is(api, "unplaced", resolve.CLASS_READY, "False", "NotFound")
    await api.delete(V, VM, "unplaced", namespace=NS)
    await eventually(lambda: gone(api, "unplaced"), 10, "unplaced VM deleted")

    # Placed: the finalizer is the node agent's to remove.
    await make_class(api, "small")
    await api.create(vm("bound"))
    assert await placed(api, "bound") == "n1"
    await api.delete(V, VM, "bound", namespace=NS)
    obj = await wait_vm(api, "bound", lambda o: o["metadata"].get("deletionTimestamp"),
                        "deleting")
    assert resolve.FINALIZER in obj["metadata"]["finalizers"]
    await asyncio.sleep(1.0)
    assert not await gone(api, "bound")
    # ... unless its node is gone: then nobody will, and the controller does.
    await api.delete("v1", "Node", "n1")
    await eventually(lambda: gone(api, "bound"), 10, "VM on a deleted node deleted")


async def test_vms_and_pods_count_against_node_capacity(api: Client) -> None:
    await api.create(node("n1", cpu="4", memory="16Gi"))
    await api.create({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "busy", "namespace": NS},
                      "spec": {"nodeName": "n1", "containers": [{
                          "name": "c", "image": "busybox",
                          "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}})
    # The class's resource policy is what placement counts (1.5 CPU each).
    await make_class(api, "small", cpus=1, memory="1Gi",
                     requests={"cpu": "1500m", "memory": "1Gi"})
    await make_image(api, "deb")
    await api.create(vm("a"))
    assert await placed(api, "a") == "n1"
    await api.create(vm("b"))
    assert await placed(api, "b") == "n1"
    await api.create(vm("c"))
    c = await condition_is(api, "c", "VirtualMachineScheduled", "False", "Unschedulable")
    assert c["message"] == "0/1 nodes are available: 1 Insufficient cpu."
    # A placed VM goes away (its agent cleans up): the waiting one takes its room.
    await api.delete(V, VM, "a", namespace=NS)
    await drop_finalizer(api, "a")
    assert await placed(api, "c") == "n1"
    # A pod that frees its share makes room too (b and c take 3 of the 4 CPUs).
    await make_class(api, "one", cpus=1, memory="1Gi")
    await api.create(vm("d", class_name="one"))
    c = await condition_is(api, "d", "VirtualMachineScheduled", "False", "Unschedulable")
    assert c["message"] == "0/1 nodes are available: 1 Insufficient cpu."
    await api.delete("v1", "Pod", "busy", namespace=NS, grace_period_seconds=0)
    assert await placed(api, "d") == "n1"
