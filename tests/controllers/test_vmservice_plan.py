"""The VirtualMachineService plan: the Service, Endpoints and status it asks
for, from VMServices and VMs as dicts (no API)."""

from __future__ import annotations

from typing import Any

from kubevisor.controllers.vmservice import plan

JSON = dict[str, Any]
NOW = "2025-01-01T00:00:00Z"


def vmsvc(type_: str = "LoadBalancer", *, selector: dict[str, str] | None = None,
          ports: list[JSON] | None = None, **spec: Any) -> JSON:
    return {"apiVersion": plan.API_VERSION, "kind": plan.KIND,
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "generation": 2,
                         "labels": {"team": "a"},
                         "annotations": {"note": "x",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"type": type_, "selector": {"app": "web"} if selector is None else selector,
                     "ports": ports if ports is not None else
                     [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                     **spec}}


def vm(name: str, ip: str = "", *, power: str = "PoweredOn", labels: dict[str, str] | None = None,
       ready: str | None = None, probe: bool = False, ns: str = "ns",
       deleting: bool = False) -> JSON:
    status: JSON = {"powerState": power, "nodeName": "node-1"}
    if ip:
        status["network"] = {"primaryIP4": ip}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": "R", "message": "",
                                 "lastTransitionTime": NOW}]
    md: JSON = {"name": name, "namespace": ns, "uid": f"uid-{name}",
                "labels": {"app": "web"} if labels is None else labels}
    if deleting:
        md["deletionTimestamp"] = NOW
    spec: JSON = {"readinessProbe": {"tcpSocket": {"port": 22}}} if probe else {}
    return {"apiVersion": plan.API_VERSION, "kind": "VirtualMachine", "metadata": md,
            "spec": spec, "status": status}


def test_new_service_copies_type_ports_and_metadata_without_a_selector() -> None:
    svc = plan.desired_service(vmsvc(loadBalancerIP="172.31.255.9",
                                     loadBalancerSourceRanges=["10.0.0.0/8"]), None)
    assert svc is not None
    assert svc["metadata"]["name"] == "web" and svc["metadata"]["namespace"] == "ns"
    assert svc["metadata"]["ownerReferences"] == [{
        "apiVersion": "vmoperator.vmware.com/v1alpha6", "kind": "VirtualMachineService",
        "name": "web", "uid": "svc-uid", "controller": True, "blockOwnerDeletion": True}]
    assert svc["metadata"]["labels"] == {"team": "a"}
    assert svc["metadata"]["annotations"] == {"note": "x"}
    assert svc["spec"] == {"type": "LoadBalancer", "loadBalancerIP": "172.31.255.9",
                           "loadBalancerSourceRanges": ["10.0.0.0/8"],
                           "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                      "targetPort": 8080}]}


def test_update_keeps_what_the_apiserver_filled_and_is_idempotent() -> None:
    current = plan.desired_service(vmsvc(), None)
    assert current is not None
    current["metadata"].update(uid="s-uid", resourceVersion="5")
    current["spec"].update(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"],
                           sessionAffinity="None", externalTrafficPolicy="Cluster",
                           selector={"stray": "x"})
    current["spec"]["ports"][0]["nodePort"] = 30080
    current["status"] = {"loadBalancer": {"ingress": [{"ip": "172.31.255.1"}]}}
    body = plan.desired_service(vmsvc(), current)
    assert body is not None and "selector" not in body["spec"]  # a selector is taken away
    assert body["spec"]["clusterIP"] == "10.96.0.10"
    assert body["spec"]["ports"][0]["nodePort"] == 30080
    body["status"] = current["status"]
    assert plan.desired_service(vmsvc(), body) is None
    # to ClusterIP: node ports and the external policy go
    body2 = plan.desired_service(vmsvc("ClusterIP"), body)
    assert body2 is not None and body2["spec"]["type"] == "ClusterIP"
    assert "nodePort" not in body2["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in body2["spec"]
    assert body2["spec"]["clusterIP"] == "10.96.0.10"


def test_ownership_conflicts_and_replacing_a_stale_owner() -> None:
    theirs = {"metadata": {"name": "web", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "o",
         "controller": True}]}}
    assert plan.controlled_by_other(theirs, vmsvc())
    assert not plan.controlled_by_other({"metadata": {"name": "web"}}, vmsvc())
    stale = plan.desired_service(vmsvc(), None)
    assert stale is not None
    stale["metadata"]["ownerReferences"][0]["uid"] = "old-uid"
    body = plan.desired_service(vmsvc(), stale)
    assert body is not None
    assert [r["uid"] for r in body["metadata"]["ownerReferences"]] == ["svc-uid"]


def test_backends_ready_not_ready_and_skipped() -> None:
    vms = [
        vm("a", "10.0.0.3"),                               # on, no probe: ready
        vm("b", "10.0.0.2", power="PoweredOff"),           # off with a stale IP: not ready
        vm("c", "10.0.0.4", probe=True),                   # probe, no Ready yet: not ready
        vm("d", "10.0.0.5", probe=True, ready="True"),     # probe passed: ready
        vm("e", "10.0.0.6", ready="False"),                # node says not ready
        vm("f"),                                           # no IP: left out
        vm("g", "10.0.0.7", labels={"app": "db"}),         # not selected
        vm("h", "10.0.0.8", ns="other"),                   # other namespace
        vm("i", "10.0.0.9", deleting=True),                # being deleted
    ]
    got = [(b.ip, b.ready, b.vm["metadata"]["name"]) for b in plan.backends(vmsvc(), vms)]
    assert got == [("10.0.0.2", False, "b"), ("10.0.0.3", True, "a"), ("10.0.0.4", False, "c"),
                   ("10.0.0.5", True, "d"), ("10.0.0.6", False, "e")]
    ep = plan.desired_endpoints(vmsvc(), vms, None)
    assert ep is not None
    assert ep["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
    [subset] = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.3", "10.0.0.5"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.2", "10.0.0.4",
                                                              "10.0.0.6"]
    assert subset["addresses"][0] == {
        "ip": "10.0.0.3", "nodeName": "node-1",
        "targetRef": {"apiVersion": plan.API_VERSION, "kind": "VirtualMachine",
                      "namespace": "ns", "name": "a", "uid": "uid-a"}}
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert plan.desired_endpoints(vmsvc(), vms, ep) is None


def test_endpoints_follow_changes_and_empty_selectors() -> None:
    ep = plan.desired_endpoints(vmsvc(), [vm("a", "10.0.0.3")], None)
    assert ep is not None
    moved = plan.desired_endpoints(vmsvc(), [vm("a", "10.0.0.4")], ep)
    assert moved is not None and moved["subsets"][0]["addresses"][0]["ip"] == "10.0.0.4"
    gone = plan.desired_endpoints(vmsvc(), [], moved)
    assert gone is not None and "subsets" not in gone
    # no selector: user-managed Endpoints are left alone, ours are emptied
    assert plan.desired_endpoints(vmsvc(selector={}), [vm("a", "10.0.0.3")], None) is None
    user = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "1.2.3.4"}], "ports": [{"port": 1}]}]}
    assert plan.desired_endpoints(vmsvc(selector={}), [], user) is None
    emptied = plan.desired_endpoints(vmsvc(selector={}), [vm("a", "10.0.0.3")], ep)
    assert emptied is not None and "subsets" not in emptied


def test_status_copies_the_load_balancer_and_says_what_is_missing() -> None:
    svc = plan.desired_service(vmsvc(), None)
    assert svc is not None
    svc["spec"]["clusterIP"] = "10.96.0.10"
    status = plan.desired_status(vmsvc(), svc, None, now=NOW)
    assert status is not None and "loadBalancer" not in status
    [cond] = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["observedGeneration"]) == \
        ("ServiceReady", "False", "LoadBalancerPending", 2)
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "172.31.255.1", "ipMode": "VIP"}]}}
    ep = plan.desired_endpoints(vmsvc(), [vm("a", "10.0.0.3")], None)
    status = plan.desired_status(vmsvc(), svc, ep, now=NOW)
    assert status is not None
    assert status["loadBalancer"] == {"ingress": [{"ip": "172.31.255.1"}]}
    assert status["conditions"][0]["status"] == "True"
    assert "172.31.255.1" in status["conditions"][0]["message"]
    assert "1 ready" in status["conditions"][0]["message"]
    done = {**vmsvc(), "status": status}
    assert plan.desired_status(done, svc, ep, now="2030-01-01T00:00:00Z") is None
    problem = plan.Problem("ServiceInvalid", "bad ports")
    bad = plan.desired_status(vmsvc(ports=[]), None, None, now=NOW, problem=problem)
    assert bad is not None and bad["conditions"][0]["reason"] == "ServiceInvalid"
    # ClusterIP: no load balancer status, even if the Service had one
    cip = plan.desired_status({**vmsvc("ClusterIP"), "status": status}, svc, ep, now=NOW)
    assert cip is not None and "loadBalancer" not in cip
    assert "cluster IP 10.96.0.10" in cip["conditions"][0]["message"]
