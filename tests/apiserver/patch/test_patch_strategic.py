"""Strategic merge patch on real Kubernetes schemas, with patches shaped as
kubectl sends them (apply's three-way patch, edit, patch)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubevisor.apiserver.patch import BadPatchError, PatchNotApplicableError
from kubevisor.apiserver.patch.strategic import strategic_merge_patch
from tests.apiserver.patch.k8s_schemas import DEPLOYMENT, POD, SERVICE, K8sSchemas


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "finalizers": ["a", "b", "c"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.24",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "args": ["x", "y"],
                        },
                        {"name": "sidecar", "image": "busybox"},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def smp(k8s: K8sSchemas, obj: dict[str, Any], patch: Any, kind: str = DEPLOYMENT) -> dict[str, Any]:
    return strategic_merge_patch(obj, patch, schema=k8s.root(kind), defs=k8s.defs)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_kubectl_apply_image_change_keeps_other_containers_and_fields(k8s: K8sSchemas) -> None:
    obj = deployment()
    before = copy.deepcopy(obj)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"image": "nginx:1.25", "name": "nginx"}],
                }
            }
        }
    }
    out = smp(k8s, obj, patch)
    c = containers(out)
    assert [x["name"] for x in c] == ["nginx", "sidecar"]
    assert c[0]["image"] == "nginx:1.25"
    assert c[0]["env"] == before["spec"]["template"]["spec"]["containers"][0]["env"]
    assert obj == before  # input untouched


def test_kubectl_apply_removes_container_with_delete_directive(k8s: K8sSchemas) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"$patch": "delete", "name": "sidecar"}],
                }
            }
        }
    }
    out = smp(k8s, deployment(), patch)
    assert [x["name"] for x in containers(out)] == ["nginx"]


def test_env_var_removed_and_added_in_declared_order(k8s: K8sSchemas) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [
                        {
                            "name": "nginx",
                            "$setElementOrder/env": [{"name": "C"}, {"name": "A"}],
                            "env": [{"name": "C", "value": "3"}, {"$patch": "delete", "name": "B"}],
                        }
                    ],
                }
            }
        }
    }
    out = smp(k8s, deployment(), patch)
    assert containers(out)[0]["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]


def test_new_container_goes_where_set_element_order_says(k8s: K8sSchemas) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [
                        {"name": "nginx"},
                        {"name": "log"},
                        {"name": "sidecar"},
                    ],
                    "containers": [{"name": "log", "image": "fluentd"}],
                }
            }
        }
    }
    out = smp(k8s, deployment(), patch)
    assert [x["name"] for x in containers(out)] == ["nginx", "log", "sidecar"]


def test_non_merging_list_is_replaced(k8s: K8sSchemas) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": ["z"]}]}}}}
    out = smp(k8s, deployment(), patch)
    assert containers(out)[0]["args"] == ["z"]
    assert containers(out)[0]["image"] == "nginx:1.24"


def test_ports_merge_by_container_port(k8s: K8sSchemas) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "nginx", "ports": [{"containerPort": 443, "protocol": "TCP"}]}
                    ]
                }
            }
        }
    }
    out = smp(k8s, deployment(), patch)
    assert {p["containerPort"] for p in containers(out)[0]["ports"]} == {80, 443}


def test_null_deletes_and_label_edit(k8s: K8sSchemas) -> None:
    patch = {"metadata": {"labels": {"app": None, "tier": "front"}}, "spec": {"replicas": None}}
    out = smp(k8s, deployment(), patch)
    assert out["metadata"]["labels"] == {"tier": "front"}
    assert "replicas" not in out["spec"]


def test_delete_from_primitive_list_and_merge_of_finalizers(k8s: K8sSchemas) -> None:
    patch = {
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "$setElementOrder/finalizers": ["d", "a", "c"],
            "finalizers": ["d"],
        }
    }
    out = smp(k8s, deployment(), patch)
    assert out["metadata"]["finalizers"] == ["d", "a", "c"]


def test_retain_keys_clears_rolling_update_when_switching_to_recreate(k8s: K8sSchemas) -> None:
    patch = {
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}
    }
    out = smp(k8s, deployment(), patch)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_in_merging_list_swaps_volume_source(k8s: K8sSchemas) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/volumes": [{"name": "data"}],
                    "volumes": [
                        {
                            "$retainKeys": ["configMap", "name"],
                            "configMap": {"name": "cm"},
                            "name": "data",
                        }
                    ],
                }
            }
        }
    }
    out = smp(k8s, deployment(), patch)
    assert out["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "configMap": {"name": "cm"}}
    ]


def test_retain_keys_must_list_every_patched_key(k8s: K8sSchemas) -> None:
    patch = {
        "spec": {
            "strategy": {
                "$retainKeys": ["type"],
                "type": "Recreate",
                "rollingUpdate": {"maxSurge": 1},
            }
        }
    }
    with pytest.raises(BadPatchError, match="retainKeys"):
        smp(k8s, deployment(), patch)


def test_patch_replace_directive_on_map_and_list(k8s: K8sSchemas) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {
            "selector": {"app": "a", "tier": "t"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}],
        },
    }
    out = smp(k8s, svc, {"spec": {"selector": {"$patch": "replace", "app": "b"}}}, SERVICE)
    assert out["spec"]["selector"] == {"app": "b"}
    out = smp(
        k8s,
        svc,
        {"spec": {"ports": [{"$patch": "replace"}, {"port": 9, "protocol": "UDP"}]}},
        SERVICE,
    )
    assert out["spec"]["ports"] == [{"port": 9, "protocol": "UDP"}]


def test_patch_delete_directive_on_map(k8s: K8sSchemas) -> None:
    out = smp(k8s, deployment(), {"spec": {"strategy": {"$patch": "delete"}}})
    assert out["spec"]["strategy"] == {}


def test_whole_object_replace(k8s: K8sSchemas) -> None:
    out = smp(
        k8s, deployment(), {"$patch": "replace", "kind": "Deployment", "metadata": {"name": "x"}}
    )
    assert out == {"kind": "Deployment", "metadata": {"name": "x"}}


def test_pod_tolerations_without_strategy_replace(k8s: K8sSchemas) -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": [{"key": "a"}]},
    }
    out = smp(k8s, pod, {"spec": {"tolerations": [{"key": "b"}]}}, POD)
    assert out["spec"]["tolerations"] == [{"key": "b"}]


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            "does not contain declared merge key: name",
        ),
        ({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}, "primitive list"),
        (
            {"spec": {"template": {"spec": {"$setElementOrder/containers": {"a": 1}}}}},
            "setElementOrder",
        ),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "nginx"}],
                            "containers": [{"name": "zz", "image": "q"}],
                        }
                    }
                }
            },
            "doesn't match",
        ),
        ({"spec": {"$patch": "frobnicate"}}, "unknown patch type"),
        (
            {"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "x"}]}}}},
            "cannot yet",
        ),
        ({"spec": {"strategy": {"$retainKeys": "type"}}}, "retainKeys"),
        (b"[1, 2]", "invalid JSON document"),
        (b"{not json", "error decoding"),
    ],
)
def test_malformed_patches_are_bad_requests(k8s: K8sSchemas, patch: Any, message: str) -> None:
    with pytest.raises(BadPatchError) as info:
        smp(k8s, deployment(), patch)
    assert message in info.value.message
    assert info.value.code == 400


def test_list_of_lists_is_422(k8s: K8sSchemas) -> None:
    obj = deployment()
    obj["metadata"]["finalizers"] = [["a"]]
    with pytest.raises(PatchNotApplicableError):
        smp(k8s, obj, {"metadata": {"finalizers": [["b"]]}})


def test_untyped_fields_merge_as_maps(k8s: K8sSchemas) -> None:
    out = strategic_merge_patch(
        {"a": {"b": 1, "l": [1]}}, {"a": {"c": 2, "l": [2]}}, schema=None, defs=None
    )
    assert out == {"a": {"b": 1, "c": 2, "l": [2]}}
