"""What updates may not change, with kube-apiserver's messages."""

from __future__ import annotations

import copy
from typing import Any

from kubevisor.api.builtin import builtin_registry
from kubevisor.api.kinds import ResourceType
from kubevisor.api.validation import validate_update
from tests.api.examples import crd_example, examples

REGISTRY = builtin_registry()


def _stored(group: str, kind: str) -> tuple[ResourceType, dict[str, Any]]:
    rt = REGISTRY.by_kind(group, "v1", kind)
    assert rt is not None
    obj = examples()[(group, kind)]
    if rt.defaulter is not None:
        rt.defaulter(obj)
    return rt, obj


def _errors(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_update(rt, old, new)]


def test_unchanged_objects_are_valid_updates() -> None:
    for group, kind in examples():
        rt, old = _stored(group, kind)
        assert _errors(rt, old, copy.deepcopy(old)) == [], kind


def test_pod_spec_is_immutable_except_images() -> None:
    rt, old = _stored("", "Pod")
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.28"
    new["spec"]["nodeName"] = "host-1"  # binding
    new["spec"]["tolerations"].append({"key": "gpu", "operator": "Exists"})
    assert _errors(rt, old, new) == []
    new["spec"]["restartPolicy"] = "Never"
    assert _errors(rt, old, new) == [
        "spec: Forbidden: pod updates may not change fields other than "
        "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
        "`spec.tolerations` (only additions to existing tolerations),"
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)"]
    bound = copy.deepcopy(old)
    bound["spec"]["nodeName"] = "host-1"
    moved = copy.deepcopy(bound)
    moved["spec"]["nodeName"] = "host-2"
    assert _errors(rt, bound, moved) == [
        'spec.nodeName: Invalid value: "host-2": field is immutable']


def test_workload_selector_is_immutable() -> None:
    rt, old = _stored("apps", "Deployment")
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert _errors(rt, old, new) == []
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "a"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "a"
    assert _errors(rt, old, new) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{'
        '"app":"web", "tier":"a"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
        "field is immutable"]
    rt, old = _stored("apps", "StatefulSet")
    new = copy.deepcopy(old)
    new["spec"]["serviceName"] = "other"
    assert _errors(rt, old, new)[0].startswith(
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'")


def test_immutable_config_and_secret_type() -> None:
    rt, old = _stored("", "ConfigMap")
    old["immutable"] = True
    new = copy.deepcopy(old)
    new["data"]["default.conf"] = "changed"
    assert _errors(rt, old, new) == [
        "data: Forbidden: field is immutable when `immutable` is set"]
    rt, old = _stored("", "Secret")
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/tls"
    assert 'type: Invalid value: "kubernetes.io/tls": field is immutable' in \
        _errors(rt, old, new)


def test_other_kinds() -> None:
    rt, old = _stored("rbac.authorization.k8s.io", "RoleBinding")
    new = copy.deepcopy(old)
    new["roleRef"]["name"] = "admin"
    assert _errors(rt, old, new) == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", '
        'Kind:"Role", Name:"admin"}: cannot change roleRef']
    rt, old = _stored("", "Service")
    old["spec"]["clusterIP"] = "10.96.0.10"
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.11"
    assert _errors(rt, old, new) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set']
    rt, old = _stored("storage.k8s.io", "StorageClass")
    new = copy.deepcopy(old)
    new["provisioner"] = "other"
    assert _errors(rt, old, new) == ["provisioner: Forbidden: updates to provisioner are "
                                     "forbidden."]
    rt, old = _stored("", "PersistentVolumeClaim")
    new = copy.deepcopy(old)
    new["spec"]["volumeName"] = "pv-1"
    new["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert _errors(rt, old, new) == []
    new["spec"]["accessModes"] = ["ReadWriteMany"]
    assert _errors(rt, old, new)[0].startswith("spec: Forbidden: spec is immutable after creation")
    # a claim with no class may get one (the default class, retroactively), once
    old["spec"].pop("storageClassName", None)
    classed = copy.deepcopy(old)
    classed["spec"]["storageClassName"] = "local"
    assert _errors(rt, old, classed) == []
    other = copy.deepcopy(classed)
    other["spec"]["storageClassName"] = "fast"
    assert _errors(rt, classed, other)[0].startswith("spec: Forbidden: spec is immutable")


def test_crd_group_scope_and_stored_versions() -> None:
    rt = REGISTRY.by_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
    assert rt is not None
    old = crd_example()
    old["status"] = {"storedVersions": ["v1beta1", "v1"]}
    new = copy.deepcopy(old)
    new["spec"]["scope"] = "Cluster"
    new["spec"]["versions"] = new["spec"]["versions"][:1]
    assert _errors(rt, old, new) == [
        'spec.scope: Invalid value: "Cluster": field is immutable',
        'status.storedVersions[0]: Invalid value: "v1beta1": must appear in spec.versions']
