"""Server-side apply: merge, ownership, pruning, conflicts, force."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubevisor.apiserver.patch.errors import ConflictError, InvalidApplyError
from kubevisor.apiserver.patch.managed import update_managed_fields
from kubevisor.apiserver.patch.ssa import LAST_APPLIED, apply
from tests.apiserver.patch.k8s_schemas import DEPLOYMENT, K8sSchemas

T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z"


def config(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.24", "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }
    base["spec"].update(spec)
    return base


def ssa(
    k8s: K8sSchemas,
    live: dict[str, Any] | None,
    cfg: dict[str, Any],
    manager: str = "kubectl",
    force: bool = False,
    now: str = T0,
    **kw: Any,
) -> dict[str, Any]:
    out = apply(
        live,
        cfg,
        manager=manager,
        force=force,
        schema=k8s.root(DEPLOYMENT),
        defs=k8s.defs,
        now=now,
        **kw,
    )
    out["metadata"].setdefault("uid", "u-1")
    return out


def update(
    k8s: K8sSchemas, old: dict[str, Any], new: dict[str, Any], manager: str, now: str = T1
) -> dict[str, Any]:
    new = copy.deepcopy(new)
    new["metadata"]["managedFields"] = update_managed_fields(
        old,
        new,
        manager=manager,
        api_version="apps/v1",
        now=now,
        schema=k8s.root(DEPLOYMENT),
        defs=k8s.defs,
    )
    return new


def managers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields", [])}


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_create_by_apply(k8s: K8sSchemas) -> None:
    cfg = config()
    before = copy.deepcopy(cfg)
    obj = ssa(k8s, None, cfg)
    assert cfg == before
    assert obj["spec"]["replicas"] == 2
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply"
    assert entry["apiVersion"] == "apps/v1" and entry["time"] == T0
    assert entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"nginx"}': {
            ".": {},
            "f:image": {},
            "f:name": {},
            "f:ports": {
                'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}
            },
        }
    }
    assert "f:name" not in entry["fieldsV1"]["f:metadata"]


def test_applying_twice_converges(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config())
    again = ssa(k8s, obj, config(), now=T2)
    assert again == obj
    assert managers(again)["kubectl"]["time"] == T0


def test_conflict_with_updater_then_force(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config())
    scaled = copy.deepcopy(obj)
    scaled["spec"]["replicas"] = 5
    scaled = update(k8s, obj, scaled, "kubectl-scale")
    with pytest.raises(ConflictError) as info:
        ssa(k8s, scaled, config(replicas=3), now=T2)
    status = info.value.status()
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert (
        status["message"]
        == 'Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-scale" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    forced = ssa(k8s, scaled, config(replicas=3), force=True, now=T2)
    assert forced["spec"]["replicas"] == 3
    assert "kubectl-scale" not in managers(forced)
    assert managers(forced)["kubectl"]["time"] == T2


def test_many_conflicts_message(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config(), manager="a")
    with pytest.raises(ConflictError) as info:
        cfg = config(replicas=4)
        containers(cfg)[0]["image"] = "nginx:2"
        ssa(k8s, obj, cfg, manager="b")
    assert info.value.message == (
        'Apply failed with 2 conflicts: conflicts with "a":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image'
    )
    assert [c["field"] for c in info.value.causes()] == [
        ".spec.replicas",
        '.spec.template.spec.containers[name="nginx"].image',
    ]


def test_same_value_is_shared_not_a_conflict(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config(), manager="a")
    both = ssa(k8s, obj, config(), manager="b")
    assert set(managers(both)) == {"a", "b"}
    assert "f:replicas" in managers(both)["a"]["fieldsV1"]["f:spec"]
    assert "f:replicas" in managers(both)["b"]["fieldsV1"]["f:spec"]
    # a drops replicas: b still owns it, so it stays
    cfg = config()
    del cfg["spec"]["replicas"]
    after = ssa(k8s, both, cfg, manager="a", now=T1)
    assert after["spec"]["replicas"] == 2
    assert "f:replicas" not in managers(after)["a"]["fieldsV1"]["f:spec"]


def test_fields_no_longer_applied_are_pruned(k8s: K8sSchemas) -> None:
    cfg = config()
    containers(cfg).append({"name": "sidecar", "image": "busybox"})
    cfg["metadata"]["labels"]["tier"] = "web"
    obj = ssa(k8s, None, cfg)
    obj = update(
        k8s,
        obj,
        {**obj, "metadata": {**obj["metadata"], "annotations": {"note": "x"}}},
        "kubectl-annotate",
    )
    smaller = config()
    del smaller["spec"]["replicas"]
    out = ssa(k8s, obj, smaller, now=T1)
    assert [c["name"] for c in containers(out)] == ["nginx"]
    assert out["metadata"]["labels"] == {"app": "web"}
    assert "replicas" not in out["spec"]
    assert out["metadata"]["annotations"] == {"note": "x"}  # owned by someone else, untouched
    assert out["metadata"]["name"] == "web"


def test_keyed_list_merge_keeps_other_managers_items(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config(), manager="a")
    cfg_b = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "fluentd"}]}}},
    }
    out = ssa(k8s, obj, cfg_b, manager="b")
    assert [c["name"] for c in containers(out)] == ["nginx", "log"]
    # a re-applies without knowing about "log": it stays
    again = ssa(k8s, out, config(), manager="a", now=T1)
    assert [c["name"] for c in containers(again)] == ["nginx", "log"]


def test_sets_merge_and_encode_values(k8s: K8sSchemas) -> None:
    cfg_a = config()
    cfg_a["metadata"]["finalizers"] = ["x.io/a"]
    obj = ssa(k8s, None, cfg_a, manager="a")
    cfg_b = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["x.io/b"]},
    }
    out = ssa(k8s, obj, cfg_b, manager="b")
    assert out["metadata"]["finalizers"] == ["x.io/a", "x.io/b"]
    assert managers(out)["b"]["fieldsV1"] == {"f:metadata": {"f:finalizers": {'v:"x.io/b"': {}}}}


def test_atomic_fields_are_replaced(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config())
    cfg = config(selector={"matchLabels": {"app": "web", "v": "2"}})
    out = ssa(k8s, obj, cfg, now=T1)
    assert out["spec"]["selector"] == {"matchLabels": {"app": "web", "v": "2"}}
    cfg2 = config(selector={"matchExpressions": [{"key": "app", "operator": "Exists"}]})
    out2 = ssa(k8s, out, cfg2, now=T2)
    assert out2["spec"]["selector"] == {"matchExpressions": [{"key": "app", "operator": "Exists"}]}


def test_before_first_apply_owns_existing_fields(k8s: K8sSchemas) -> None:
    live = config()
    live["metadata"]["uid"] = "u-1"
    live["spec"]["paused"] = True
    out = ssa(k8s, live, config())
    assert set(managers(out)) == {"kubectl", "before-first-apply"}
    bfa = managers(out)["before-first-apply"]
    assert bfa["operation"] == "Update"
    assert "f:paused" in bfa["fieldsV1"]["f:spec"]
    assert "f:replicas" in bfa["fieldsV1"]["f:spec"]  # shared: same value
    with pytest.raises(
        ConflictError, match=r'conflict with "before-first-apply" using apps/v1: \.spec\.replicas'
    ):
        ssa(k8s, live, config(replicas=3))


def test_client_side_to_server_side_upgrade(k8s: K8sSchemas) -> None:
    cfg = config()
    live = copy.deepcopy(cfg)
    live["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(cfg)}
    live = update(k8s, {}, live, "kubectl-client-side-apply", now=T0)
    live["metadata"]["uid"] = "u-1"
    out = ssa(
        k8s, live, config(replicas=3), now=T1
    )  # would conflict with kubectl-client-side-apply
    assert out["spec"]["replicas"] == 3
    last = json.loads(out["metadata"]["annotations"][LAST_APPLIED])
    assert last["spec"]["replicas"] == 3
    assert out["metadata"]["annotations"][LAST_APPLIED].endswith("\n")
    # a field whose live value drifted from last-applied still conflicts
    drifted = copy.deepcopy(live)
    drifted["spec"]["replicas"] = 7
    drifted = update(k8s, live, drifted, "kubectl-client-side-apply", now=T1)
    with pytest.raises(ConflictError):
        ssa(k8s, drifted, config(replicas=3), now=T2)


def test_status_subresource_apply(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config())
    status_cfg = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
    }
    out = ssa(k8s, obj, status_cfg, manager="ctrl", subresource="status", now=T1)
    assert out["status"]["conditions"][0]["type"] == "Available"
    entry = managers(out)["ctrl"]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"]["f:status"]["f:conditions"] == {
        'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}}
    }
    assert out["spec"] == obj["spec"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda c: c["spec"].__setitem__("bogus", 1),
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.bogus: field not declared in schema",
        ),
        (
            lambda c: c["metadata"].__setitem__("managedFields", []),
            "metadata.managedFields must be nil",
        ),
        (
            lambda c: c.__setitem__("apiVersion", "apps/v1beta1"),
            "Incorrect version specified in apply patch",
        ),
        (
            lambda c: containers(c).append({"name": "nginx", "image": "again"}),
            "duplicate entries for key",
        ),
        (lambda c: containers(c).append({"image": "nameless"}), "omits key field 'name'"),
        (lambda c: c["spec"].__setitem__("replicas", {"a": 1}), "expected scalar"),
        (lambda c: c["spec"].__setitem__("template", "x"), "expected map"),
        (lambda c: c.pop("apiVersion"), "Incorrect version specified in apply patch"),
    ],
)
def test_invalid_configurations_are_bad_requests(
    k8s: K8sSchemas, mutate: Any, message: str
) -> None:
    cfg = config()
    mutate(cfg)
    with pytest.raises(InvalidApplyError) as info:
        ssa(k8s, None, cfg, api_version="apps/v1")
    assert message in info.value.message
    assert info.value.code == 400


CRD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "properties": {
                "size": {"type": "integer"},
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "disks": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "gb": {"type": "integer"}},
                    },
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    },
}


def test_custom_resource_inline_schema(k8s: K8sSchemas) -> None:
    vm = {
        "apiVersion": "vm.io/v1",
        "kind": "VM",
        "metadata": {"name": "a", "labels": {"x": "1"}},
        "spec": {
            "size": 1,
            "tags": ["t1"],
            "disks": [{"name": "root", "gb": 10}],
            "extra": {"free": {"form": 1}},
        },
    }
    obj = apply(None, vm, manager="m1", force=False, schema=CRD_SCHEMA, defs=k8s.defs, now=T0)
    fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:spec"]["f:disks"] == {'k:{"name":"root"}': {".": {}, "f:gb": {}, "f:name": {}}}
    assert fields["f:spec"]["f:tags"] == {'v:"t1"': {}}
    # free-form keys are members themselves (structured-merge-diff's deduced maps)
    assert fields["f:spec"]["f:extra"] == {"f:free": {".": {}, "f:form": {}}}
    assert fields["f:metadata"] == {"f:labels": {"f:x": {}}}  # metadata typed as ObjectMeta
    other = {
        "apiVersion": "vm.io/v1",
        "kind": "VM",
        "metadata": {"name": "a"},
        "spec": {"tags": ["t2"], "disks": [{"name": "data", "gb": 5}]},
    }
    out = apply(obj, other, manager="m2", force=False, schema=CRD_SCHEMA, defs=k8s.defs, now=T1)
    assert out["spec"]["tags"] == ["t1", "t2"]
    assert [d["name"] for d in out["spec"]["disks"]] == ["root", "data"]
    with pytest.raises(InvalidApplyError, match="field not declared"):
        apply(
            None,
            {**vm, "spec": {"sise": 1}},
            manager="m",
            force=False,
            schema=CRD_SCHEMA,
            defs={},
            now=T0,
        )


RECURSIVE_DEFS: dict[str, Any] = {
    "root": {"type": "object", "properties": {"tree": {"$ref": "#/components/schemas/tree"}}},
    "tree": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/tree"}},
}


def test_recursive_schema_compiles_and_merges() -> None:
    schema = {"$ref": "#/components/schemas/root"}
    one = apply(
        None,
        {"apiVersion": "t/v1", "tree": {"a": {"b": {}}}},
        manager="x",
        force=False,
        schema=schema,
        defs=RECURSIVE_DEFS,
        now=T0,
    )
    two = apply(
        one,
        {"apiVersion": "t/v1", "tree": {"a": {"c": {}}}},
        manager="y",
        force=False,
        schema=schema,
        defs=RECURSIVE_DEFS,
        now=T1,
    )
    assert two["tree"] == {"a": {"b": {}, "c": {}}}


def test_duplicated_items_in_live_are_owned_whole_and_kept(k8s: K8sSchemas) -> None:
    obj = ssa(k8s, None, config(), manager="applier")
    dup = copy.deepcopy(obj)
    env = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
    containers(dup)[0]["env"] = env
    dup = update(k8s, obj, dup, "editor")
    owned = managers(dup)["editor"]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][
        'k:{"name":"nginx"}'
    ]["f:env"]
    assert owned == {".": {}, 'k:{"name":"A"}': {}}  # the duplicated item as a whole, no fields
    again = ssa(k8s, dup, config(), manager="applier", now=T2)
    assert containers(again)[0]["env"] == env
