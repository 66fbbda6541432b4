"""The patch functions on the schemas the apiserver really passes:
``kubevisor.api.schemas`` (OpenAPI v3 components, allOf-wrapped refs)."""

from __future__ import annotations

from kubevisor.api import schemas
from kubevisor.apiserver.patch import apply, strategic_merge_patch, update_managed_fields

DEP = "io.k8s.api.apps.v1.Deployment"


def dep() -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}],
                    "volumes": [{"name": "v", "emptyDir": {}}],
                },
            },
        },
    }


def test_strategic_with_api_schemas() -> None:
    root, defs = schemas.component(DEP), schemas.component_schemas()
    out = strategic_merge_patch(
        dep(),
        {
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                "template": {
                    "spec": {
                        "$setElementOrder/volumes": [{"name": "v"}],
                        "volumes": [
                            {
                                "$retainKeys": ["configMap", "name"],
                                "name": "v",
                                "configMap": {"name": "x"},
                            }
                        ],
                        "containers": [{"name": "c", "ports": [{"containerPort": 81}]}],
                    }
                },
            }
        },
        schema=root,
        defs=defs,
    )
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "v", "configMap": {"name": "x"}}]
    assert [
        p["containerPort"] for p in out["spec"]["template"]["spec"]["containers"][0]["ports"]
    ] == [81, 80]


def test_managed_fields_and_apply_with_api_schemas() -> None:
    root, defs = schemas.component(DEP), schemas.component_schemas()
    mf = update_managed_fields(
        None,
        dep(),
        manager="kubectl-create",
        api_version="apps/v1",
        now="2024-01-01T00:00:00Z",
        schema=root,
        defs=defs,
    )
    fields = mf[0]["fieldsV1"]
    assert fields["f:spec"]["f:selector"] == {}  # LabelSelector is atomic
    assert fields["f:spec"]["f:strategy"]["f:rollingUpdate"] == {".": {}, "f:maxSurge": {}}
    obj = apply(
        None,
        dep(),
        manager="kubectl",
        force=False,
        schema=root,
        defs=defs,
        now="2024-01-01T00:00:00Z",
        api_version="apps/v1",
    )
    ports = obj["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"][
        "f:containers"
    ]['k:{"name":"c"}']["f:ports"]
    assert ports == {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}
