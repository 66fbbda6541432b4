"""The VM controller's pure parts: the plan (conditions, placement readiness,
finalizer) and placement (the scheduler's filters and scores on VMs)."""

from __future__ import annotations

import random
from typing import Any

from kubevisor.api.vmoperator import resolve
from kubevisor.controllers.vm import placement
from kubevisor.controllers.vm.plan import (
    Cond,
    Observed,
    apply_status,
    class_ref,
    plan,
    secret_refs,
)

JSON = dict[str, Any]
DIGEST = {resolve.DIGEST_ANNOTATION: "sha256:00"}


def vm(name: str = "w", *, labels: JSON | None = None, finalizers: list[str] | None = None,
       deleting: bool = False, node: str = "", **spec: Any) -> JSON:
    meta: JSON = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 3,
                  "labels": labels or {}}
    if finalizers:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    spec.setdefault("className", "small")
    spec.setdefault("imageName", "deb")
    obj = {"apiVersion": "vmoperator.vmware.com/v1alpha6", "kind": "VirtualMachine",
           "metadata": meta, "spec": spec}
    if node:
        obj["status"] = {"nodeName": node}
    return obj


def vmclass(name: str = "small", cpus: int = 1, memory: str = "1Gi") -> JSON:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"hardware": {"cpus": cpus, "memory": memory}}}


def image(kind: str = "ClusterVirtualMachineImage", *, ready: str = "True",
          annotations: JSON | None = None) -> JSON:
    return {"kind": kind, "metadata": {"name": "deb", "annotations": annotations or DIGEST},
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "reason": "Imported", "message": ""}]}}


def conds(p: Any) -> dict[str, Cond]:
    return {c.type: c for c in p.conditions}


def test_all_ready_places_and_names_the_class() -> None:
    p = plan(Observed(vm=vm(), vmclass=vmclass(), image=image()))
    assert {t: (c.status, c.reason) for t, c in conds(p).items()} == {
        resolve.CLASS_READY: ("True", "True"), resolve.IMAGE_READY: ("True", "True"),
        resolve.STORAGE_READY: ("True", "True"), resolve.BOOTSTRAP_READY: ("True", "True")}
    assert p.place and not p.add_finalizer and not p.remove_finalizer
    assert p.class_ref == {"apiVersion": "vmoperator.vmware.com/v1alpha6",
                           "kind": "VirtualMachineClass", "name": "small"}


def test_missing_class_or_image_blocks_placement() -> None:
    p = plan(Observed(vm=vm(className="big"), image=image()))
    c = conds(p)[resolve.CLASS_READY]
    assert (c.status, c.reason, c.message) == (
        "False", "NotFound", 'VirtualMachineClass "big" not found in namespace "ns"')
    assert not p.place and p.class_ref is None

    p = plan(Observed(vm=vm(), vmclass=vmclass()))
    c = conds(p)[resolve.IMAGE_READY]
    assert (c.reason, c.message) == ("NotFound", 'neither VirtualMachineImage "deb" in '
                                     'namespace "ns" nor ClusterVirtualMachineImage "deb" found')
    assert not p.place
    p = plan(Observed(vm=vm(imageName=None, image={"kind": "ClusterVirtualMachineImage",
                                                   "name": "deb"}), vmclass=vmclass()))
    assert conds(p)[resolve.IMAGE_READY].message == 'ClusterVirtualMachineImage "deb" not found'
    p = plan(Observed(vm=vm(className=None, imageName=None)))
    assert conds(p)[resolve.CLASS_READY].reason == "NotSpecified"
    assert conds(p)[resolve.IMAGE_READY].reason == "NotSpecified"


def test_image_not_ready_or_without_digest() -> None:
    p = plan(Observed(vm=vm(), vmclass=vmclass(), image=image(ready="False")))
    c = conds(p)[resolve.IMAGE_READY]
    assert (c.reason, c.message) == ("NotReady", 'ClusterVirtualMachineImage "deb" is not '
                                     "ready: Imported")
    assert not p.place
    p = plan(Observed(vm=vm(), vmclass=vmclass(), image=image(annotations={"x": "y"})))
    c = conds(p)[resolve.IMAGE_READY]
    assert c.reason == "NotReady" and "no content digest" in c.message
    no_conditions = {"kind": "VirtualMachineImage", "metadata": {"annotations": DIGEST}}
    c = conds(plan(Observed(vm=vm(), vmclass=vmclass(), image=no_conditions)))[
        resolve.IMAGE_READY]
    assert c.message == 'VirtualMachineImage "deb" is not ready: it has no Ready condition'


def test_storage_needs_every_claim_bound_but_does_not_block_placement() -> None:
    spec = {"volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": "pa"}},
                        {"name": "b", "persistentVolumeClaim": {"claimName": "pb"}}]}
    pending = {"metadata": {"name": "pa"}, "status": {"phase": "Pending"}}
    p = plan(Observed(vm=vm(**spec), vmclass=vmclass(), image=image(), pvcs={"pa": pending}))
    c = conds(p)[resolve.STORAGE_READY]
    assert (c.status, c.reason, c.message) == (
        "False", "NotBound", 'PersistentVolumeClaim "pa" is Pending, not Bound; '
        'PersistentVolumeClaim "pb" not found')
    assert p.place
    bound = {"status": {"phase": "Bound"}}
    p = plan(Observed(vm=vm(**spec), vmclass=vmclass(), image=image(),
                      pvcs={"pa": bound, "pb": bound}))
    assert conds(p)[resolve.STORAGE_READY].ok


def test_bootstrap_secret_and_key() -> None:
    spec = {"bootstrap": {"cloudInit": {
        "rawCloudConfig": {"name": "ud", "key": "user-data"},
        "cloudConfig": {"users": [{"name": "ops", "passwd": {"name": "pw", "key": "p"}}]}}}}
    assert secret_refs(vm(**spec)) == [
        ("spec.bootstrap.cloudInit.rawCloudConfig", "ud", "user-data"),
        ("spec.bootstrap.cloudInit.cloudConfig.users[0].passwd", "pw", "p")]
    c = conds(plan(Observed(vm=vm(**spec))))[resolve.BOOTSTRAP_READY]
    assert (c.reason, c.message) == (
        "SecretNotFound", 'Secret "ud" named by spec.bootstrap.cloudInit.rawCloudConfig not found')
    secrets = {"ud": {"data": {"other": "eA=="}}, "pw": {"data": {"p": "eA=="}}}
    c = conds(plan(Observed(vm=vm(**spec), secrets=secrets)))[resolve.BOOTSTRAP_READY]
    assert c.reason == "KeyNotFound" and c.message.startswith('Secret "ud" has no key "user-data"')
    secrets["ud"] = {"stringData": {"user-data": "#cloud-config"}}
    assert conds(plan(Observed(vm=vm(**spec), secrets=secrets)))[resolve.BOOTSTRAP_READY].ok


def test_placed_once_and_finalizer_kept() -> None:
    p = plan(Observed(vm=vm(node="n1"), vmclass=vmclass(), image=image(), node_name="n1"))
    assert not p.place and p.add_finalizer
    p = plan(Observed(vm=vm(node="n1", finalizers=[resolve.FINALIZER]), vmclass=vmclass(),
                      image=image(), node_name="n1"))
    assert not p.place and not p.add_finalizer


def test_deleting_removes_the_finalizer_only_when_no_agent_will() -> None:
    fin = [resolve.FINALIZER, "other"]
    assert plan(Observed(vm=vm(deleting=True, finalizers=fin))).remove_finalizer
    bound = vm(deleting=True, finalizers=fin, node="n1")
    p = plan(Observed(vm=bound, node_name="n1"))
    assert p.deleting and not p.remove_finalizer and not p.conditions
    assert plan(Observed(vm=bound, node_name="n1", node_exists=False)).remove_finalizer
    assert not plan(Observed(vm=vm(deleting=True, finalizers=["other"]))).remove_finalizer


def test_apply_status_merges_and_never_moves_the_node() -> None:
    status: JSON = {"powerState": "PoweredOn", "conditions": [
        {"type": resolve.READY, "status": "True", "reason": "x", "message": "",
         "lastTransitionTime": "t0"}]}
    ready = (Cond(resolve.CLASS_READY, "True", "True"),)
    assert apply_status(status, ready, class_ref=class_ref(vmclass()), node_name="n1",
                        generation=3, now="t1")
    assert status["nodeName"] == "n1" and status["powerState"] == "PoweredOn"
    assert [c["type"] for c in status["conditions"]] == [resolve.READY, resolve.CLASS_READY]
    assert not apply_status(status, ready, class_ref=class_ref(vmclass()), node_name="n1",
                            generation=3, now="t2")
    assert not apply_status(status, ready, class_ref=class_ref(vmclass()), node_name="n2",
                            generation=3, now="t2")
    assert status["nodeName"] == "n1"


# -- placement -------------------------------------------------------------------


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", ready: bool | None = True,
         labels: JSON | None = None, taints: list[JSON] | None = None,
         unschedulable: bool = False) -> JSON:
    alloc = {"cpu": cpu, "memory": memory, "pods": "110"}
    status: JSON = {"allocatable": alloc}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "Unknown"}]
    spec: JSON = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": labels or {},
                         "annotations": {placement.ACCEL_ANNOTATION: "tcg"}},
            "spec": spec, "status": status}


def pod(name: str, node_name: str, cpu: str, *, phase: str = "Running") -> JSON:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"pod-{name}"},
            "spec": {"nodeName": node_name, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase}}


def choose(the_vm: JSON, nodes: list[JSON], pods: list[JSON] = (),  # type: ignore[assignment]
           placed: list[tuple[JSON, str]] = (), cls: JSON | None = None  # type: ignore[assignment]
           ) -> tuple[str | None, str]:
    cls = cls or vmclass(cpus=2, memory="2Gi")
    cache = placement.snapshot(nodes, pods, [(placement.vm_info(v, cls), n) for v, n in placed])
    return placement.choose(placement.vm_info(the_vm, cls), cache, rng=random.Random(1))


def test_vm_as_a_pod_requests_its_class() -> None:
    info = placement.vm_info(vm(), vmclass(cpus=2, memory="1Gi"))
    assert (info.requests.milli_cpu, info.requests.memory) == (2000, 2**30)
    assert info.namespace == "vm:ns" and info.uid == "uid-w"


def test_places_where_it_fits_net_of_pods_and_vms() -> None:
    nodes = [node("a", cpu="4"), node("b", cpu="4")]
    # a: a 3-CPU pod; b: a placed VM of 2 CPUs: only b has 2 left.
    assert choose(vm(), nodes, [pod("p", "a", "3")], [(vm("x"), "b")]) == ("b", "")
    # Finished pods take nothing.
    assert choose(vm(), nodes, [pod("p", "a", "3", phase="Succeeded")],
                  [(vm("x"), "b"), (vm("y"), "b")]) == ("a", "")
    assert choose(vm(), nodes, [pod("p", "a", "3")], [(vm("x"), "b"), (vm("y"), "b")]) == (
        None, "0/2 nodes are available: 2 Insufficient cpu.")


def test_not_ready_cordoned_and_tainted_nodes_are_not_chosen() -> None:
    nodes = [node("nr", ready=False), node("none", ready=None),
             node("cordon", unschedulable=True),
             node("taint", taints=[{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
             node("small", cpu="1")]
    got, message = choose(vm(), nodes)
    assert got is None
    assert message == (
        "0/5 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
        "{gpu: yes}, 1 node(s) were unschedulable, 2 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }.")
    assert choose(vm(), [*nodes, node("ok")])[0] == "ok"
    # PreferNoSchedule does not filter.
    soft = node("soft", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    assert choose(vm(), [soft])[0] == "soft"


def test_node_view_keeps_ready_nodes_and_taints_others_once() -> None:
    ready = node("r")
    assert placement.node_view(ready) is ready
    view = placement.node_view(node("n", ready=False))
    assert view["spec"]["taints"] == [{"key": "node.kubernetes.io/not-ready",
                                       "effect": "NoSchedule"}]
    again = placement.node_view(view)
    assert again["spec"]["taints"] == view["spec"]["taints"]


def test_nodes_whose_agent_runs_no_vms_are_not_chosen() -> None:
    bare = node("pods-only")
    del bare["metadata"]["annotations"]
    view = placement.node_view(bare)
    assert view["spec"]["taints"] == [{"key": "vmoperator.kubevisor.io/no-hypervisor",
                                       "effect": "NoSchedule"}]
    assert choose(vm(), [bare]) == (None, "0/1 nodes are available: 1 node(s) had untolerated "
                                          "taint {vmoperator.kubevisor.io/no-hypervisor: }.")
    assert choose(vm(), [bare, node("hv")])[0] == "hv"


def test_vm_affinity_and_anti_affinity_between_vms() -> None:
    zone = "topology.kubernetes.io/zone"
    nodes = [node("z1", labels={zone: "1"}), node("z2", labels={zone: "2"})]
    db = vm("db", labels={"app": "db"})
    term = [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": zone}]
    near = vm("web", affinity={"vmAffinity": {
        "requiredDuringSchedulingPreferredDuringExecution": term}})
    assert choose(near, nodes, placed=[(db, "z2")]) == ("z2", "")
    away = vm("replica", labels={"app": "db"}, affinity={"vmAntiAffinity": {
        "requiredDuringSchedulingPreferredDuringExecution": term}})
    assert choose(away, nodes, placed=[(db, "z1")])[0] == "z2"
    got, message = choose(away, nodes, placed=[(db, "z1"), (vm("db2", labels={"app": "db"}),
                                                            "z2")])
    assert got is None and "didn't match pod anti-affinity rules" in message
    # A pod with the same labels is no VM: the terms do not see it.
    look_alike = pod("p", "z1", "100m")
    look_alike["metadata"]["labels"] = {"app": "db"}
    got, message = choose(near, nodes, pods=[look_alike])
    assert got is None and "didn't match pod affinity rules" in message
