"""Everyday kubectl workflows beyond single verbs: multi-document and List
manifests, ``get all``, sorting, ``delete -f``/``--all``, the
``--dry-run=client -o yaml | kubectl apply -f -`` pipeline, ``set image``,
``set env``, ``expose``, ``replace --force``, ``apply --prune``."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e import manifests
from tests.e2e.output import table
from tests.support.server import KubevisorServer

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-kubectl-workflows")


def names(server: KubevisorServer, *args: str) -> list[str]:
    return server.kubectl("get", *args, "-o", "name").stdout.split()


def test_multi_document_apply_and_delete_file(server: KubevisorServer, ns: str) -> None:
    docs = "---\n".join(
        [
            yaml.safe_dump(json.loads(manifests.configmap("doc-a", namespace=ns, data={"a": "1"}))),
            manifests.deployment("doc-d", namespace=ns, replicas=1),
            yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "doc-s", "namespace": ns},
                            "spec": {"ports": [{"port": 80}], "selector": {"app": "doc-d"}}}),
        ]
    )  # fmt: skip
    out = server.kubectl("apply", "-f", "-", input=docs).stdout.splitlines()
    assert out == [
        "configmap/doc-a created",
        "deployment.apps/doc-d created",
        "service/doc-s created",
    ]
    out = server.kubectl("apply", "-f", "-", input=docs).stdout.splitlines()
    assert out == [
        "configmap/doc-a unchanged",
        "deployment.apps/doc-d unchanged",
        "service/doc-s unchanged",
    ]
    deleted = server.kubectl("delete", "-f", "-", input=docs).stdout.splitlines()
    assert deleted == [
        'configmap "doc-a" deleted',
        'deployment.apps "doc-d" deleted',
        'service "doc-s" deleted',
    ]
    assert names(server, "cm,deploy,svc", "-n", ns) == []


def test_get_all(server: KubevisorServer, ns: str) -> None:
    docs = "---\n".join(
        [
            yaml.safe_dump(json.loads(manifests.pod("all-pod", namespace=ns))),
            manifests.deployment("all-deploy", namespace=ns),
            yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "all-svc", "namespace": ns},
                            "spec": {"ports": [{"port": 80}]}}),
            yaml.safe_dump(json.loads(manifests.configmap("not-in-all", namespace=ns))),
        ]
    )  # fmt: skip
    server.kubectl("create", "-f", "-", input=docs)
    everything = set(names(server, "all", "-n", ns))
    assert {"pod/all-pod", "service/all-svc", "deployment.apps/all-deploy"} <= everything
    assert not any(name.startswith("configmap/") for name in everything)

    listed = yaml.safe_load(server.kubectl("get", "pods,services", "-n", ns, "-o", "yaml").stdout)
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert {item["kind"] for item in listed["items"]} == {"Pod", "Service"}


def test_list_manifest(server: KubevisorServer, ns: str) -> None:
    items = [
        json.loads(manifests.pod("list-pod", namespace=ns)),
        json.loads(manifests.configmap("list-cm", namespace=ns)),
    ]
    as_list = {"apiVersion": "v1", "kind": "List", "items": items}
    out = server.kubectl("create", "-f", "-", input=json.dumps(as_list)).stdout.splitlines()
    assert out == ["pod/list-pod created", "configmap/list-cm created"]
    # the scheduler reports the pod unschedulable (no node here) first: the
    # exported resourceVersions must be the settled ones
    server.kubectl("wait", "pod/list-pod", "-n", ns, "--for=condition=PodScheduled=false",
                   "--timeout=30s")
    # what `kubectl get -o yaml` prints is a List that applies back unchanged
    exported = server.kubectl("get", "cm/list-cm", "pod/list-pod", "-n", ns, "-o", "yaml").stdout
    out = server.kubectl("apply", "-f", "-", input=exported).stdout.splitlines()
    assert sorted(out) == ["configmap/list-cm configured", "pod/list-pod configured"] or sorted(
        out
    ) == ["configmap/list-cm unchanged", "pod/list-pod unchanged"], out


def test_sort_by_and_field_selectors(server: KubevisorServer, ns: str) -> None:
    for name, value in [("s-b", "3"), ("s-c", "1"), ("s-a", "2")]:
        server.create_configmap(name, ns, {"v": value})
    by_name = server.kubectl("get", "cm", "-n", ns, "--sort-by=.metadata.name").stdout
    assert [row["NAME"] for row in table(by_name)] == ["s-a", "s-b", "s-c"]
    by_value = server.kubectl("get", "cm", "-n", ns, "--sort-by=.data.v", "-o", "name").stdout
    assert by_value.split() == ["configmap/s-c", "configmap/s-a", "configmap/s-b"]
    server.kubectl("create", "-f", "-", input=manifests.pod("phase", namespace=ns))
    pending = names(server, "pods", "-n", ns, "--field-selector=status.phase=Pending")
    assert pending == ["pod/phase"]
    assert names(server, "pods", "-n", ns, "--field-selector=status.phase=Running") == []
    bad = server.kubectl("get", "cm", "-n", ns, "--field-selector=data.v=1", check=False)
    assert bad.returncode == 1
    assert "field label not supported: data.v" in bad.stderr, bad.stderr


def test_dry_run_client_pipeline(server: KubevisorServer, ns: str) -> None:
    generated = server.kubectl(
        "create", "configmap", "piped", "-n", ns, "--from-literal=k=v",
        "--dry-run=client", "-o", "yaml",
    ).stdout  # fmt: skip
    assert names(server, "cm", "-n", ns) == []
    out = server.kubectl("apply", "-f", "-", input=generated).stdout
    assert out.strip() == "configmap/piped created"
    server_dry = server.kubectl(
        "apply", "-f", "-", "--dry-run=server", input=generated.replace("k: v", "k: w")
    ).stdout
    assert server_dry.strip() == "configmap/piped configured (server dry run)"
    assert server.kubectl_json("get", "cm", "piped", "-n", ns)["data"] == {"k": "v"}


def test_set_image_env_and_expose(server: KubevisorServer, ns: str) -> None:
    server.apply_yaml(manifests.deployment("setme", namespace=ns, replicas=1))
    out = server.kubectl("set", "image", "deployment/setme", "web=nginx:1.29", "-n", ns).stdout
    assert out.strip() == "deployment.apps/setme image updated"
    out = server.kubectl("set", "env", "deployment/setme", "-c", "web", "MODE=prod", "-n", ns)
    assert out.stdout.strip() == "deployment.apps/setme env updated"
    obj = server.kubectl_json("get", "deploy", "setme", "-n", ns)
    web = obj["spec"]["template"]["spec"]["containers"][0]
    assert web["image"] == "nginx:1.29"
    assert web["env"] == [{"name": "MODE", "value": "prod"}]
    assert obj["spec"]["template"]["spec"]["containers"][1]["image"] == "busybox:1.36"

    out = server.kubectl("expose", "deployment", "setme", "--port=8080", "--target-port=80",
                         "-n", ns).stdout  # fmt: skip
    assert out.strip() == "service/setme exposed"
    svc = server.kubectl_json("get", "svc", "setme", "-n", ns)
    assert svc["spec"]["selector"] == {"app": "setme"}
    assert svc["spec"]["ports"][0]["port"] == 8080
    assert svc["spec"]["ports"][0]["targetPort"] == 80
    assert svc["spec"]["type"] == "ClusterIP"


def test_replace_force_and_delete_all(server: KubevisorServer, ns: str) -> None:
    server.create_configmap("forced", ns, {"a": "1"})
    uid = server.kubectl_json("get", "cm", "forced", "-n", ns)["metadata"]["uid"]
    replaced = server.kubectl(
        "replace", "--force", "-f", "-",
        input=manifests.configmap("forced", namespace=ns, data={"a": "2"}),
    ).stdout.splitlines()  # fmt: skip
    assert replaced == ['configmap "forced" deleted', "configmap/forced replaced"]
    obj = server.kubectl_json("get", "cm", "forced", "-n", ns)
    assert obj["data"] == {"a": "2"} and obj["metadata"]["uid"] != uid

    for i in range(4):
        server.create_configmap(f"many-{i}", ns)
    out = server.kubectl("delete", "cm", "--all", "-n", ns).stdout.splitlines()
    assert len(out) == 5 and all(line.endswith(" deleted") for line in out), out
    assert names(server, "cm", "-n", ns) == []


def test_apply_prune_by_label(server: KubevisorServer, ns: str) -> None:
    def config(*keep: str) -> str:
        return "---\n".join(
            yaml.safe_dump(
                json.loads(manifests.configmap(name, namespace=ns, labels={"set": "prune"}))
            )
            for name in keep
        )

    server.kubectl("apply", "-f", "-", input=config("keep", "drop"))
    result = server.kubectl(
        "apply", "--prune", "-l", "set=prune", "--prune-allowlist=core/v1/ConfigMap",
        "-f", "-", input=config("keep"),
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert "configmap/keep unchanged" in lines, lines
    assert "configmap/drop pruned" in lines, lines
    assert names(server, "cm", "-n", ns, "-l", "set=prune") == ["configmap/keep"]
