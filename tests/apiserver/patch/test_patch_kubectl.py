"""The real kubectl against a real ``kubevisor up``: the patches kubectl
builds itself (client-side apply's three-way strategic patches with
``$setElementOrder``/``$retainKeys``/``$patch: delete``, ``kubectl patch``)
and server-side apply's ownership and conflicts, end to end."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import KubevisorServer, running_server, unique

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubevisorServer]:
    with running_server(Path(tmp_path_factory.mktemp("kv-patch")) / "data") as srv:
        yield srv


@pytest.fixture
def ns(server: KubevisorServer) -> Iterator[str]:
    name = unique("patch")
    server.create_namespace(name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def deployment(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.26",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "1d"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def apply(server: KubevisorServer, obj: dict[str, Any], *args: str) -> str:
    return server.kubectl("apply", "-f", "-", *args, input=json.dumps(obj)).stdout.strip()


def get(server: KubevisorServer, ns: str) -> dict[str, Any]:
    return server.kubectl_json("get", "deploy", "web", "-n", ns)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def test_client_side_apply_follows_the_manifest_through_list_edits(
    server: KubevisorServer, ns: str
) -> None:
    v1 = deployment(ns)
    assert apply(server, v1) == "deployment.apps/web created"
    assert apply(server, v1) == "deployment.apps/web unchanged"

    # reorder containers, change an image, drop env B, add env C, add a port,
    # swap the volume source (retainKeys) and switch to Recreate (retainKeys)
    v2 = copy.deepcopy(v1)
    web, sidecar = pod_spec(v2)["containers"]
    web["image"] = "nginx:1.27"
    web["env"] = [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    web["ports"].append({"containerPort": 443})
    pod_spec(v2)["containers"] = [sidecar, web]
    pod_spec(v2)["volumes"] = [{"name": "data", "configMap": {"name": "cfg"}}]
    v2["spec"]["strategy"] = {"type": "Recreate"}
    assert apply(server, v2) == "deployment.apps/web configured"
    live = get(server, ns)
    spec = pod_spec(live)
    assert [c["name"] for c in spec["containers"]] == ["sidecar", "web"]
    web_live = spec["containers"][1]
    assert web_live["image"] == "nginx:1.27"
    assert web_live["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert sorted(p["containerPort"] for p in web_live["ports"]) == [80, 443]
    assert [set(v) - {"name"} for v in spec["volumes"]] == [{"configMap"}]
    assert live["spec"]["strategy"] == {"type": "Recreate"}
    assert apply(server, v2) == "deployment.apps/web unchanged"

    # drop the sidecar and a label; a label added by hand survives
    server.kubectl("label", "deploy", "web", "-n", ns, "owner=ops")
    v3 = copy.deepcopy(v2)
    pod_spec(v3)["containers"] = [web]
    v3["metadata"]["labels"] = {"app": "web", "tier": "front"}
    assert apply(server, v3) == "deployment.apps/web configured"
    live = get(server, ns)
    assert [c["name"] for c in pod_spec(live)["containers"]] == ["web"]
    assert live["metadata"]["labels"] == {"app": "web", "tier": "front", "owner": "ops"}
    assert apply(server, v3) == "deployment.apps/web unchanged"


def test_kubectl_patch_strategic_directives(server: KubevisorServer, ns: str) -> None:
    apply(server, deployment(ns))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [{"$patch": "delete", "name": "sidecar"}],
                }
            }
        }
    }
    server.kubectl("patch", "deploy", "web", "-n", ns, "-p", json.dumps(patch))
    assert [c["name"] for c in pod_spec(get(server, ns))["containers"]] == ["web"]
    bad = server.kubectl(
        "patch",
        "deploy",
        "web",
        "-n",
        ns,
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}',
        check=False,
    )
    assert bad.returncode != 0
    assert "does not contain declared merge key: name" in bad.stderr


def test_server_side_apply_ownership_and_conflicts(server: KubevisorServer, ns: str) -> None:
    v1 = deployment(ns)
    assert apply(server, v1, "--server-side") == "deployment.apps/web serverside-applied"
    assert apply(server, v1, "--server-side") == "deployment.apps/web serverside-applied"
    server.kubectl(
        "patch",
        "deploy",
        "web",
        "-n",
        ns,
        "--type",
        "merge",
        "--field-manager",
        "tuner",
        "-p",
        '{"spec":{"replicas":5}}',
    )
    v2 = copy.deepcopy(v1)
    v2["spec"]["replicas"] = 3
    clash = server.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(v2), check=False)
    assert clash.returncode != 0
    assert 'conflict with "tuner" using apps/v1: .spec.replicas' in clash.stderr
    assert (
        apply(server, v2, "--server-side", "--force-conflicts")
        == "deployment.apps/web serverside-applied"
    )
    live = server.kubectl_json("get", "deploy", "web", "-n", ns, "--show-managed-fields")
    assert live["spec"]["replicas"] == 3
    managers = {m["manager"]: m for m in live["metadata"]["managedFields"]}
    assert "f:replicas" in managers["kubectl"]["fieldsV1"]["f:spec"]
    assert "tuner" not in managers  # it owned nothing else

    # dropping the sidecar from the configuration removes it
    v3 = copy.deepcopy(v2)
    pod_spec(v3)["containers"] = pod_spec(v3)["containers"][:1]
    apply(server, v3, "--server-side")
    assert [c["name"] for c in pod_spec(get(server, ns))["containers"]] == ["web"]


def test_client_side_then_server_side_apply(server: KubevisorServer, ns: str) -> None:
    v1 = deployment(ns)
    apply(server, v1)
    v2 = copy.deepcopy(v1)
    v2["spec"]["replicas"] = 4
    assert apply(server, v2, "--server-side") == "deployment.apps/web serverside-applied"
    live = get(server, ns)
    assert live["spec"]["replicas"] == 4
    last = json.loads(
        live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )
    assert last["spec"]["replicas"] == 4
