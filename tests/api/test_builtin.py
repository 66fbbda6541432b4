"""The built-in registry: every kind of issue 2 with kube-apiserver's
discovery data, and a schema that resolves and accepts a realistic object."""

from __future__ import annotations

import copy

import pytest

from kubevisor.api import schemas, validation
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.kinds import ResourceType
from tests.api.examples import examples

REGISTRY = builtin_registry()
KINDS = sorted(examples())


VMOPERATOR_PLURALS = {
    "virtualmachines", "virtualmachineclasses", "virtualmachineimages",
    "clustervirtualmachineimages", "virtualmachineservices", "virtualmachinewebconsolerequests",
    "virtualmachinepublishrequests", "virtualmachinesetresourcepolicies"}


def test_every_kind_of_issue_2_is_served() -> None:
    expected = {
        ("", "v1"): {"namespaces", "pods", "nodes", "services", "endpoints", "configmaps",
                     "secrets", "events", "serviceaccounts", "resourcequotas", "limitranges",
                     "persistentvolumes", "persistentvolumeclaims"},
        ("apps", "v1"): {"deployments", "replicasets", "statefulsets", "daemonsets",
                         "controllerrevisions"},
        ("batch", "v1"): {"jobs"},
        ("coordination.k8s.io", "v1"): {"leases"},
        ("apiextensions.k8s.io", "v1"): {"customresourcedefinitions"},
        ("rbac.authorization.k8s.io", "v1"): {"roles", "rolebindings", "clusterroles",
                                              "clusterrolebindings"},
        ("node.k8s.io", "v1"): {"runtimeclasses"},
        ("discovery.k8s.io", "v1"): {"endpointslices"},
        ("certificates.k8s.io", "v1"): {"certificatesigningrequests"},
        ("storage.k8s.io", "v1"): {"storageclasses"},
        **{("vmoperator.vmware.com", version): VMOPERATOR_PLURALS
           for version in ("v1alpha3", "v1alpha4", "v1alpha5", "v1alpha6")},
    }
    served: dict[tuple[str, str], set[str]] = {}
    for rt in REGISTRY:
        served.setdefault((rt.group, rt.version), set()).add(rt.plural)
    assert served == expected


@pytest.mark.parametrize(("plural", "short"), [
    ("namespaces", ("ns",)), ("pods", ("po",)), ("nodes", ("no",)), ("services", ("svc",)),
    ("endpoints", ("ep",)), ("configmaps", ("cm",)), ("secrets", ()), ("events", ("ev",)),
    ("serviceaccounts", ("sa",)), ("resourcequotas", ("quota",)), ("limitranges", ("limits",)),
    ("persistentvolumes", ("pv",)), ("persistentvolumeclaims", ("pvc",)),
])
def test_core_short_names(plural: str, short: tuple[str, ...]) -> None:
    rt = REGISTRY.by_resource("", "v1", plural)
    assert rt is not None and rt.short_names == short


def test_discovery_details() -> None:
    def get(group: str, plural: str) -> ResourceType:
        rt = REGISTRY.by_resource(group, "v1", plural)
        assert rt is not None
        return rt

    all_category = {rt.plural for rt in REGISTRY if "all" in rt.categories}
    assert all_category == {"pods", "services", "deployments", "replicasets", "statefulsets",
                            "daemonsets", "jobs"}
    assert get("apiextensions.k8s.io", "customresourcedefinitions").short_names == ("crd", "crds")
    assert get("apps", "deployments").short_names == ("deploy",)
    assert get("storage.k8s.io", "storageclasses").short_names == ("sc",)
    scaled = {rt.plural for rt in REGISTRY if rt.scale is not None}
    assert scaled == {"deployments", "replicasets", "statefulsets"}
    no_status = {rt.plural for rt in REGISTRY if not rt.has_status}
    assert {"configmaps", "secrets", "endpoints", "events", "serviceaccounts", "limitranges",
            "leases", "roles", "storageclasses", "runtimeclasses"} <= no_status
    assert {"pods", "nodes", "namespaces", "services", "deployments",
            "customresourcedefinitions", "persistentvolumes"}.isdisjoint(no_status)
    assert not get("", "namespaces").namespaced and not get("", "nodes").namespaced
    assert "deletecollection" not in get("", "namespaces").verbs
    pod = get("", "pods")
    assert {"spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "status.podIP",
            "status.nominatedNodeName"} <= set(pod.selectable_fields)
    assert get("", "secrets").selectable_fields == ("type",)
    assert get("", "namespaces").selectable_fields == ("status.phase",)
    assert get("", "nodes").selectable_fields == ("spec.unschedulable",)
    assert get("apps", "replicasets").selectable_fields == ("status.replicas",)
    assert {"involvedObject.name", "reason", "source", "type"} <= set(
        get("", "events").selectable_fields)
    for rt in REGISTRY:
        assert rt.printer_columns, rt.kind
        assert rt.served, rt.kind
        if rt.group == "vmoperator.vmware.com":  # CRD-like, four versions, one stored
            assert rt.custom and rt.storage == (rt.version == "v1alpha6"), rt
        else:
            assert not rt.custom and rt.storage, rt.kind


def test_examples_cover_every_kind() -> None:
    # The VM Operator kinds (several versions each) have examples of their own
    # in tests/api/test_vmoperator*.py.
    assert set(KINDS) == {(rt.group, rt.kind) for rt in REGISTRY
                          if rt.group != "vmoperator.vmware.com"}


@pytest.mark.parametrize(("group", "kind"), KINDS)
def test_schema_resolves_and_accepts_a_realistic_object(group: str, kind: str) -> None:
    rt = REGISTRY.by_kind(group, "v1", kind)
    assert rt is not None
    schema = schemas.schema_of(rt)
    gvks = schema["x-kubernetes-group-version-kind"]
    assert {"group": group, "version": "v1", "kind": kind} in gvks
    for name in schemas.refs_in(schema):
        assert name in schemas.component_schemas()
    obj = examples()[(group, kind)]
    if rt.defaulter is not None:
        rt.defaulter(obj)
        again = copy.deepcopy(obj)
        rt.defaulter(again)
        assert again == obj, "defaulting must be idempotent"
    assert validation.validate(rt, obj) == []
    assert validation.unknown_fields_of(rt, obj) == []


def test_warm_up_prepares_everything() -> None:
    from kubevisor.api import openapi
    from kubevisor.api.builtin import warm_up

    registry = builtin_registry()
    warm_up(registry)
    assert "api/v1" in openapi.openapi_v3_index(registry)["paths"]
