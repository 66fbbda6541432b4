"""Server-side defaults as kube-apiserver fills them in, for built-ins and
for CRD schemas with ``default`` values."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubevisor.api import defaults
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.crd import resource_types
from tests.api.examples import crd_example, examples

REGISTRY = builtin_registry()


def _defaulted(group: str, kind: str) -> dict[str, Any]:
    rt = REGISTRY.by_kind(group, "v1", kind)
    assert rt is not None and rt.defaulter is not None
    obj = examples()[(group, kind)]
    rt.defaulter(obj)
    return obj


def test_pod_defaults() -> None:
    pod = _defaulted("", "Pod")
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == "default"
    assert spec["priority"] == 0
    assert spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert {t["key"] for t in spec["tolerations"]} == {"node.kubernetes.io/not-ready",
                                                      "node.kubernetes.io/unreachable"}
    c = spec["containers"][0]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["ports"][0]["protocol"] == "TCP"
    assert c["readinessProbe"]["periodSeconds"] == 10
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert c["env"][1]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert spec["volumes"][0]["configMap"]["defaultMode"] == 420
    assert pod["status"] == {"phase": "Pending", "qosClass": "Burstable"}


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
    ("registry:5000/team/app", "Always"), ("registry:5000/team/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    assert defaults.image_pull_policy(image) == policy


def test_user_values_are_kept() -> None:
    rt = REGISTRY.by_kind("", "v1", "Pod")
    assert rt is not None and rt.defaulter is not None
    pod = examples()[("", "Pod")]
    pod["spec"].update(restartPolicy="Never", serviceAccountName="builder")
    pod["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    rt.defaulter(pod)
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == "builder"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_qos_class() -> None:
    guaranteed = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    assert defaults.qos_class(guaranteed) == "Guaranteed"
    assert defaults.qos_class({"containers": [{"name": "a"}]}) == "BestEffort"


def test_workload_defaults() -> None:
    deploy = _defaulted("apps", "Deployment")["spec"]
    assert deploy["strategy"] == {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert deploy["revisionHistoryLimit"] == 10
    assert deploy["progressDeadlineSeconds"] == 600
    tspec = deploy["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and tspec["dnsPolicy"] == "ClusterFirst"
    assert "serviceAccountName" not in tspec and "priority" not in tspec
    sts = _defaulted("apps", "StatefulSet")["spec"]
    assert sts["podManagementPolicy"] == "OrderedReady"
    assert sts["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["volumeClaimTemplates"][0]["spec"]["volumeMode"] == "Filesystem"
    ds = _defaulted("apps", "DaemonSet")["spec"]
    assert ds["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    rt = REGISTRY.by_kind("apps", "v1", "Deployment")
    assert rt is not None and rt.defaulter is not None
    bare = {"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": []}}}}
    rt.defaulter(bare)
    assert bare["spec"]["replicas"] == 1


def test_other_defaults() -> None:
    svc = _defaulted("", "Service")["spec"]
    assert svc["type"] == "ClusterIP" and svc["sessionAffinity"] == "None"
    assert svc["ports"][0]["protocol"] == "TCP"
    assert svc["ports"][0]["targetPort"] == "http"
    rt = REGISTRY.by_kind("", "v1", "Service")
    assert rt is not None and rt.defaulter is not None
    plain = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 8080}]}}
    rt.defaulter(plain)
    assert plain["spec"]["ports"][0]["targetPort"] == 8080
    assert _defaulted("", "Secret")["type"] == "Opaque"
    ns = _defaulted("", "Namespace")
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["status"]["phase"] == "Active"
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "team-a"
    crd = _defaulted("apiextensions.k8s.io", "CustomResourceDefinition")
    assert crd["spec"]["names"]["listKind"] == "CronTabList"
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    rb = _defaulted("rbac.authorization.k8s.io", "RoleBinding")
    assert [s["apiGroup"] for s in rb["subjects"]] == ["rbac.authorization.k8s.io", ""]


def test_crd_schema_defaults() -> None:
    v1, v1beta1 = resource_types(crd_example())
    assert v1beta1.defaulter is None
    assert v1.defaulter is not None
    obj = {"metadata": {"name": "c"}, "spec": {"cronSpec": "* * * * *"}}
    v1.defaulter(obj)
    assert obj["spec"] == {"cronSpec": "* * * * *", "replicas": 1, "policy": "Allow"}
    kept = {"metadata": {"name": "c"}, "spec": {"replicas": 5}}
    v1.defaulter(kept)
    assert kept["spec"]["replicas"] == 5
    # An absent parent object is not created by defaults below it.
    empty: dict[str, Any] = {"metadata": {"name": "c"}}
    before = copy.deepcopy(empty)
    v1.defaulter(empty)
    assert empty == before


def test_secret_string_data_is_folded_into_data() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "b": "é"}}  # fmt: skip
    defaults.secret(secret)
    assert "stringData" not in secret
    assert secret["data"] == {"a": "bmV3", "keep": "eA==", "b": "w6k="}
    assert secret["type"] == "Opaque"
