"""Services through the real kubectl on a real ``kubevisor up``: ``kubectl
expose pod``, ``kubectl create service``, ``kubectl get svc,ep -o wide``
showing the allocated ClusterIP and the endpoints, kube's error for a
taken ClusterIP or node port. The test plays the kubelet (pods get an IP
and a Ready condition through the status subresource); the controller
manager of ``kubevisor up`` writes the Endpoints."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from tests.e2e.output import table
from tests.support.server import KubevisorServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-kubectl-services")]


def pod_manifest(name: str, ns: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
        # Bound to a node no agent runs (--no-node): nothing but this test
        # reports its status.
        "spec": {"nodeName": "e2e-node", "containers": [{
            "name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": 8080}]}]},
    })


def kubelet(server: KubevisorServer, ns: str, name: str, ip: str) -> None:
    status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
              "conditions": [{"type": "Ready", "status": "True",
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    with server.client() as http:
        r = http.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", json={"status": status},
                       headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text


def wait_for(check, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not met in {timeout}s"
        time.sleep(0.2)


def test_expose_pod_and_get_svc_ep_wide(server: KubevisorServer, ns: str) -> None:
    for name, ip in (("web-1", "10.244.7.11"), ("web-2", "10.244.7.12")):
        server.kubectl("create", "-f", "-", input=pod_manifest(name, ns))
        kubelet(server, ns, name, ip)
    out = server.kubectl("expose", "pod", "web-1", "--name", "web", "--port", "80",
                         "--target-port", "http", "-n", ns).stdout
    assert out.strip() == "service/web exposed"

    def endpoints_row() -> dict[str, str] | None:
        rows = table(server.kubectl("get", "ep", "web", "-n", ns, "-o", "wide",
                                    check=False).stdout)
        return rows[0] if rows and "10.244.7.12:8080" in rows[0]["ENDPOINTS"] else None

    wait_for(endpoints_row, what="endpoints of both pods")
    text = server.kubectl("get", "svc,ep", "-n", ns, "-o", "wide").stdout
    svc_text, ep_text = text.split("\n\n", 1)
    [svc] = table(svc_text)
    assert svc["NAME"] == "service/web" and svc["TYPE"] == "ClusterIP"
    assert ipaddress.ip_address(svc["CLUSTER-IP"]) in ipaddress.ip_network("10.96.0.0/12")
    assert svc["EXTERNAL-IP"] == "<none>" and svc["PORT(S)"] == "80/TCP"
    assert svc["SELECTOR"] == "app=web"
    [ep] = table(ep_text)
    assert ep["NAME"] == "endpoints/web"
    assert ep["ENDPOINTS"] == "10.244.7.11:8080,10.244.7.12:8080"
    got = server.kubectl_json("get", "svc", "web", "-n", ns)
    assert got["spec"]["clusterIPs"] == [svc["CLUSTER-IP"]]
    slices = server.kubectl_json("get", "endpointslices", "-n", ns,
                                 "-l", "kubernetes.io/service-name=web")["items"]
    assert sorted(a for s in slices for e in s["endpoints"] for a in e["addresses"]) == \
        ["10.244.7.11", "10.244.7.12"]
    # Deleting a pod takes it out (it is bound: graceful, so at once out of Endpoints).
    server.kubectl("delete", "pod", "web-2", "-n", ns, "--wait=false")
    wait_for(lambda: table(server.kubectl("get", "ep", "web", "-n", ns).stdout)[0]["ENDPOINTS"]
             == "10.244.7.11:8080", what="web-2 gone")


def test_create_service_kinds_and_conflicts(server: KubevisorServer, ns: str) -> None:
    server.kubectl("create", "service", "clusterip", "fixed", "--tcp=80:8080",
                   "--clusterip=10.96.0.200", "-n", ns)
    server.kubectl("create", "service", "clusterip", "headless", "--clusterip=None", "-n", ns)
    server.kubectl("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30990",
                   "-n", ns)
    server.kubectl("create", "service", "loadbalancer", "lb", "--tcp=443:8443", "-n", ns)
    rows = {r["NAME"]: r for r in table(server.kubectl("get", "svc", "-n", ns).stdout)}
    assert rows["fixed"]["CLUSTER-IP"] == "10.96.0.200"
    assert rows["headless"]["CLUSTER-IP"] == "None"
    assert rows["np"]["TYPE"] == "NodePort" and rows["np"]["PORT(S)"] == "80:30990/TCP"
    port = rows["lb"]["PORT(S)"]
    assert port.startswith("443:") and port.endswith("/TCP")
    assert 30000 <= int(port[4:-4]) <= 32767
    manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dup"},
                "spec": {"clusterIP": "10.96.0.200", "ports": [{"port": 80}]}}
    dup = server.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest), check=False)
    assert dup.returncode != 0
    assert ('The Service "dup" is invalid: spec.clusterIPs: Invalid value: '
            '[]string{"10.96.0.200"}: failed to allocate IP 10.96.0.200: provided IP is '
            "already allocated") in dup.stderr
    dup = server.kubectl("create", "service", "nodeport", "dup", "--tcp=80",
                         "--node-port=30990", "-n", ns, check=False)
    assert dup.returncode != 0
    assert ('Service "dup" is invalid: spec.ports[0].nodePort: Invalid value: 30990: '
            "provided port is already allocated") in dup.stderr
    # Deleted, its ClusterIP and node port are free again.
    server.kubectl("delete", "svc", "fixed", "np", "-n", ns)
    server.kubectl("create", "service", "nodeport", "again", "--tcp=80", "--node-port=30990",
                   "-n", ns)
    server.kubectl("create", "service", "clusterip", "again2", "--tcp=80",
                   "--clusterip=10.96.0.200", "-n", ns)
