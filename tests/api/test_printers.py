"""Table columns and cells of the built-in kinds and of CRDs, as kubectl
shows them against kube-apiserver."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kubevisor.api import printers
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.crd import resource_types
from kubevisor.api.kinds import ResourceType
from tests.api.examples import crd_example, examples

REGISTRY = builtin_registry()
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)  # one hour after examples.TS


def _rt(group: str, kind: str) -> ResourceType:
    rt = REGISTRY.by_kind(group, "v1", kind)
    assert rt is not None
    return rt


def _headers(rt: ResourceType, wide: bool = False) -> list[str]:
    return [c["name"].upper() for c in printers.table_columns(rt)
            if wide or c["priority"] == 0]


@pytest.mark.parametrize(("group", "kind", "headers"), [
    ("", "Pod", "NAME READY STATUS RESTARTS AGE"),
    ("apps", "Deployment", "NAME READY UP-TO-DATE AVAILABLE AGE"),
    ("apps", "ReplicaSet", "NAME DESIRED CURRENT READY AGE"),
    ("apps", "StatefulSet", "NAME READY AGE"),
    ("apps", "DaemonSet", "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE"),
    ("", "Service", "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE"),
    ("", "Node", "NAME STATUS ROLES AGE VERSION"),
    ("", "Namespace", "NAME STATUS AGE"),
    ("", "ConfigMap", "NAME DATA AGE"),
    ("", "Secret", "NAME TYPE DATA AGE"),
    ("", "ServiceAccount", "NAME SECRETS AGE"),
    ("", "Event", "LAST SEEN TYPE REASON OBJECT MESSAGE"),
    ("", "Endpoints", "NAME ENDPOINTS AGE"),
    ("", "ResourceQuota", "NAME AGE REQUEST LIMIT"),
    ("apiextensions.k8s.io", "CustomResourceDefinition", "NAME CREATED AT"),
    ("storage.k8s.io", "StorageClass",
     "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE"),
    ("coordination.k8s.io", "Lease", "NAME HOLDER AGE"),
    ("rbac.authorization.k8s.io", "RoleBinding", "NAME ROLE AGE"),
])
def test_headers(group: str, kind: str, headers: str) -> None:
    # Multi-word headers are joined by single spaces, as kubectl prints them.
    assert " ".join(_headers(_rt(group, kind))) == headers


def test_wide_headers() -> None:
    assert _headers(_rt("", "Pod"), wide=True)[5:] == ["IP", "NODE", "NOMINATED NODE",
                                                       "READINESS GATES"]
    assert _headers(_rt("apps", "Deployment"), wide=True)[5:] == ["CONTAINERS", "IMAGES",
                                                                  "SELECTOR"]
    assert _headers(_rt("", "Service"), wide=True)[6:] == ["SELECTOR"]


def _cells(group: str, kind: str, obj: dict[str, Any]) -> list[Any]:
    return printers.table_cells(_rt(group, kind), obj, NOW)


def test_pod_cells() -> None:
    pod = examples()[("", "Pod")]
    assert _cells("", "Pod", pod) == ["web", "0/1", "Pending", "0", "60m", "<none>", "<none>",
                                      "<none>", "<none>"]
    pod["spec"]["nodeName"] = "host-1"
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [{
        "name": "nginx", "ready": True, "restartCount": 2, "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T11:57:00Z"}}}]}
    assert _cells("", "Pod", pod)[:7] == ["web", "1/1", "Running", "2 (3m ago)", "60m",
                                          "10.0.0.5", "host-1"]
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    pod["status"]["containerStatuses"][0]["ready"] = False
    assert _cells("", "Pod", pod)[1:3] == ["0/1", "CrashLoopBackOff"]
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    assert _cells("", "Pod", pod)[2] == "Terminating"
    pod = examples()[("", "Pod")]
    pod["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}]
    pod["status"] = {"phase": "Pending", "initContainerStatuses": [
        {"name": "init", "state": {"running": {}}}]}
    assert _cells("", "Pod", pod)[2] == "Init:0/1"


def test_workload_and_service_cells() -> None:
    deploy = examples()[("apps", "Deployment")]
    deploy["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    assert _cells("apps", "Deployment", deploy) == ["web", "2/3", 3, 2, "60m", "nginx",
                                                    "nginx:1.27", "app=web"]
    svc = examples()[("", "Service")]
    svc["spec"].update(type="LoadBalancer", clusterIP="10.96.0.20",
                       ports=[{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                              {"port": 53, "protocol": "UDP"}])
    assert _cells("", "Service", svc) == ["web", "LoadBalancer", "10.96.0.20", "<pending>",
                                          "80:30080/TCP,53/UDP", "60m", "app=web"]
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    assert _cells("", "Service", svc)[3] == "192.0.2.10"


def test_other_cells() -> None:
    ex = examples()
    assert _cells("", "ConfigMap", ex[("", "ConfigMap")]) == ["nginx-conf", 1, "60m"]
    assert _cells("", "Secret", {**ex[("", "Secret")], "type": "Opaque"}) == [
        "creds", "Opaque", 1, "60m"]
    assert _cells("", "Node", ex[("", "Node")])[:5] == ["host-1", "Ready", "<none>", "60m",
                                                        "v1.32.0"]
    event_cells = _cells("", "Event", ex[("", "Event")])
    assert [event_cells[i] for i in (0, 1, 2, 3, 6)] == [
        "60m", "Normal", "Scheduled", "pod/web", "Successfully assigned default/web"]
    assert _cells("", "Endpoints", ex[("", "Endpoints")]) == ["web", "10.0.0.5:80", "60m"]
    assert _cells("storage.k8s.io", "StorageClass", ex[("storage.k8s.io", "StorageClass")]) == [
        "local (default)", "kubevisor.io/local", "Delete", "Immediate", False, "60m"]
    assert _cells("apiextensions.k8s.io", "CustomResourceDefinition", crd_example()) == [
        "crontabs.stable.example.com", "2026-01-01T11:00:00Z"]
    quota = ex[("", "ResourceQuota")]
    quota["status"] = {"hard": quota["spec"]["hard"], "used": {"pods": "2"}}
    assert _cells("", "ResourceQuota", quota) == ["quota", "60m", "pods: 2/10, requests.cpu: 0/4",
                                                  "limits.memory: 0/8Gi"]


def test_custom_resource_columns() -> None:
    v1, v1beta1 = resource_types(crd_example())
    assert [c["name"] for c in printers.table_columns(v1)] == [
        "Name", "Spec", "Replicas", "Ready", "Image", "Age"]
    assert [c["priority"] for c in printers.table_columns(v1)] == [0, 0, 0, 0, 1, 0]
    obj = {"metadata": {"name": "c1", "creationTimestamp": "2026-01-01T11:58:30Z"},
           "spec": {"cronSpec": "* * * * */5", "replicas": 2.0},
           "status": {"conditions": [{"type": "Other", "status": "False"},
                                     {"type": "Ready", "status": "True"}]}}
    assert printers.table_cells(v1, obj, NOW) == ["c1", "* * * * */5", 2, "True", None, "90s"]
    # No additionalPrinterColumns: NAME and AGE.
    assert [c["name"] for c in printers.table_columns(v1beta1)] == ["Name", "Age"]
    assert printers.table_cells(v1beta1, obj, NOW) == ["c1", "90s"]


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (150, "2m30s"),
    (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 600, "3h10m"),
    (47 * 3600, "47h"), (50 * 3600, "2d2h"), (48 * 3600, "2d"), (30 * 86400, "30d"),
    (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration(seconds: int, text: str) -> None:
    assert printers.human_duration(seconds) == text


def test_format_selector() -> None:
    assert printers.format_selector({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["web", "api"]},
        {"key": "x", "operator": "DoesNotExist"}]}) == "a=1,b=2,tier in (api,web),!x"
    assert printers.format_selector({}) == "<none>"
