"""managedFields for create, update and patch (non-apply writes)."""

from __future__ import annotations

import copy
from typing import Any

from kubevisor.apiserver.patch.managed import update_managed_fields
from tests.apiserver.patch.k8s_schemas import DEPLOYMENT, POD, K8sSchemas

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:00:07.123456Z"


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"run": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "nginx",
                    "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "resources": {},
                }
            ],
            "restartPolicy": "Always",
            "securityContext": {},
        },
        "status": {"phase": "Pending"},
    }


def umf(
    k8s: K8sSchemas,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    kind: str = POD,
    **kw: Any,
) -> list[dict[str, Any]]:
    kw.setdefault("api_version", "apps/v1" if kind == DEPLOYMENT else "v1")
    kw.setdefault("now", T0)
    return update_managed_fields(
        old, new, manager=manager, schema=k8s.root(kind), defs=k8s.defs, **kw
    )


def stored(obj: dict[str, Any], mf: list[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["uid"] = "u-1"
    out["metadata"]["managedFields"] = mf
    return out


def test_create_entry_has_kube_shape(k8s: K8sSchemas) -> None:
    mf = umf(k8s, None, pod(), "kubectl-run")
    assert mf == [
        {
            "manager": "kubectl-run",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:run": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"nginx"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                                ".": {},
                                'k:{"containerPort":80,"protocol":"TCP"}': {
                                    ".": {},
                                    "f:containerPort": {},
                                },
                            },
                            "f:resources": {},
                        }
                    },
                    "f:restartPolicy": {},
                    "f:securityContext": {},
                },
            },
        }
    ]
    assert list(mf[0]) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]


def test_update_moves_changed_fields_to_the_writer(k8s: K8sSchemas) -> None:
    old = stored(pod(), umf(k8s, None, pod(), "kubectl-create"))
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["tier"] = "front"
    new["spec"]["containers"][0]["image"] = "nginx:2"
    mf = umf(k8s, old, new, "kubectl-edit", now=T1)
    by = {e["manager"]: e for e in mf}
    assert [e["manager"] for e in mf] == ["kubectl-create", "kubectl-edit"]
    assert by["kubectl-edit"]["time"] == "2024-05-01T10:00:07Z"
    assert by["kubectl-edit"]["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:tier": {}}},
        "f:spec": {"f:containers": {'k:{"name":"nginx"}': {"f:image": {}}}},
    }
    creator = by["kubectl-create"]["fieldsV1"]
    assert "f:image" not in creator["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert by["kubectl-create"]["time"] == T0


def test_removed_fields_leave_every_owner_and_empty_entries_go(k8s: K8sSchemas) -> None:
    old = stored(pod(), umf(k8s, None, pod(), "a"))
    mid = copy.deepcopy(old)
    mid["metadata"]["labels"]["x"] = "1"
    mid["metadata"]["managedFields"] = umf(k8s, old, mid, "b")
    new = copy.deepcopy(mid)
    del new["metadata"]["labels"]["x"]
    mf = umf(k8s, mid, new, "c")
    assert [e["manager"] for e in mf] == ["a"]


def test_same_manager_entries_merge(k8s: K8sSchemas) -> None:
    old = stored(pod(), umf(k8s, None, pod(), "kubectl-label"))
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["more"] = "yes"
    mf = umf(k8s, old, new, "kubectl-label", now=T1)
    assert len(mf) == 1
    assert "f:more" in mf[0]["fieldsV1"]["f:metadata"]["f:labels"]
    assert "f:spec" in mf[0]["fieldsV1"]
    assert mf[0]["time"] == "2024-05-01T10:00:07Z"


def test_noop_update_keeps_time(k8s: K8sSchemas) -> None:
    old = stored(pod(), umf(k8s, None, pod(), "a"))
    mf = umf(k8s, old, copy.deepcopy(old), "a", now=T1)
    assert mf == old["metadata"]["managedFields"]


def test_status_is_not_tracked_on_main_resource_but_is_on_status(k8s: K8sSchemas) -> None:
    old = stored(pod(), umf(k8s, None, pod(), "a"))
    assert "f:status" not in old["metadata"]["managedFields"][0]["fieldsV1"]
    new = copy.deepcopy(old)
    new["status"]["phase"] = "Running"
    new["status"]["podIP"] = "10.0.0.1"
    mf = umf(k8s, old, new, "kubelet", subresource="status")
    entry = next(e for e in mf if e["manager"] == "kubelet")
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:phase": {}, "f:podIP": {}}}
    assert list(entry)[-1] == "subresource"


def test_request_managed_fields_reset_and_untracked_objects(k8s: K8sSchemas) -> None:
    old = stored(pod(), umf(k8s, None, pod(), "a"))
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = []
    assert umf(k8s, old, new, "b") == []
    untracked = copy.deepcopy(old)
    del untracked["metadata"]["managedFields"]
    changed = copy.deepcopy(untracked)
    changed["metadata"]["labels"]["z"] = "1"
    assert umf(k8s, untracked, changed, "b") == []


def test_request_can_replace_managed_fields(k8s: K8sSchemas) -> None:
    old = stored(pod(), umf(k8s, None, pod(), "a"))
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [
        {
            "manager": "x",
            "operation": "Update",
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:restartPolicy": {}}},
        }
    ]
    mf = umf(k8s, old, new, "b")
    assert [e["manager"] for e in mf] == ["x"]


def test_update_managers_are_capped_at_ten(k8s: K8sSchemas) -> None:
    obj = stored(pod(), umf(k8s, None, pod(), "m0"))
    for i in range(1, 13):
        new = copy.deepcopy(obj)
        new["metadata"]["labels"][f"l{i}"] = "v"
        new["metadata"]["managedFields"] = umf(
            k8s, obj, new, f"m{i}", now=f"2024-05-01T10:00:{i:02d}Z"
        )
        obj = new
    names = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(names) == 10
    assert "ancient-changes" in names
    ancient = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == "ancient-changes")
    assert "f:l1" in ancient["fieldsV1"]["f:metadata"]["f:labels"]


def test_deployment_create_like_kube(k8s: K8sSchemas) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"app": "d"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "d"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    fields = umf(k8s, None, dep, "kubectl-create", kind=DEPLOYMENT)[0]["fieldsV1"]
    assert fields["f:spec"]["f:selector"] == {}
    assert fields["f:spec"]["f:strategy"] == {
        "f:rollingUpdate": {".": {}, "f:maxSurge": {}},
        "f:type": {},
    }
    assert "." not in fields["f:spec"]["f:template"]
    assert fields["f:spec"]["f:template"]["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}


def test_manager_name_from_user_agent() -> None:
    from kubevisor.apiserver.patch import manager_or_user_agent

    assert manager_or_user_agent("kubectl-edit", "kubectl/v1.32.0") == "kubectl-edit"
    assert (
        manager_or_user_agent(None, "kubectl/v1.32.0 (linux/amd64) kubernetes/5864a46") == "kubectl"
    )
    assert manager_or_user_agent("", "OpenAPI-Generator/31.0.0/python") == "OpenAPI-Generator"
    assert manager_or_user_agent(None, "a\x00b" + "c" * 300) == "ab" + "c" * 126
    assert manager_or_user_agent(None, None) == ""
