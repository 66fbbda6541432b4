"""kubectl create/get/describe/label/annotate/patch/scale/edit/replace/delete
against ``kubevisor up``, each output checked against what kubectl prints
when it talks to kube-apiserver."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from tests.e2e import manifests
from tests.e2e.output import AGE, header, table
from tests.support.nodeserver import wait_until
from tests.support.server import KubevisorServer

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-kubectl-crud")


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_create_and_get_in_every_output_format(server: KubevisorServer, ns: str) -> None:
    out = server.kubectl(
        "create", "-f", "-", input=manifests.pod("web-1", namespace=ns, labels={"app": "web"})
    ).stdout
    assert out.strip() == "pod/web-1 created"

    plain = server.kubectl("get", "pod", "web-1", "-n", ns).stdout
    assert header(plain) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    [row] = table(plain)
    assert row["NAME"] == "web-1"
    assert row["READY"] == "0/1"
    assert row["STATUS"] == "Pending"
    assert row["RESTARTS"] == "0"
    assert AGE.match(row["AGE"]), row

    wide = server.kubectl("get", "pod", "web-1", "-n", ns, "-o", "wide").stdout
    assert header(wide) == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    [row] = table(wide)
    assert row["NODE"] == "<none>" and row["IP"] == "<none>"

    obj = server.kubectl_json("get", "pod", "web-1", "-n", ns)
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Pod"
    meta = obj["metadata"]
    assert meta["name"] == "web-1" and meta["namespace"] == ns
    assert meta["labels"] == {"app": "web"}
    assert UID.match(meta["uid"]), meta
    assert meta["resourceVersion"].isdigit()
    assert RFC3339.match(meta["creationTimestamp"]), meta
    assert obj["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert obj["status"]["phase"] == "Pending"

    as_yaml = yaml.safe_load(server.kubectl("get", "pod", "web-1", "-n", ns, "-o", "yaml").stdout)
    assert as_yaml["metadata"]["uid"] == meta["uid"]
    assert "managedFields" not in as_yaml["metadata"]  # kubectl hides them by default
    managed = server.kubectl_json("get", "pod", "web-1", "-n", ns, "--show-managed-fields")
    # kubectl's entry (the scheduler may add its own for the PodScheduled condition)
    [entry] = [m for m in managed["metadata"]["managedFields"]
               if m.get("subresource") != "status"]
    assert entry["manager"] == "kubectl-create" and entry["operation"] == "Update"
    assert entry["fieldsType"] == "FieldsV1"

    name = server.kubectl("get", "pod", "web-1", "-n", ns, "-o", "name").stdout
    assert name.strip() == "pod/web-1"
    jp = server.kubectl(
        "get",
        "pod",
        "web-1",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.name}:{.spec.containers[0].name}",
    ).stdout
    assert jp == "web-1:main"
    cc = server.kubectl(
        "get", "pods", "-n", ns, "-o", "custom-columns=N:.metadata.name,APP:.metadata.labels.app"
    ).stdout
    assert table(cc) == [{"N": "web-1", "APP": "web"}]


def test_deployment_defaults_and_wide_columns(server: KubevisorServer, ns: str) -> None:
    server.apply_yaml(manifests.deployment("shop", namespace=ns, replicas=2))
    obj = server.kubectl_json("get", "deployment", "shop", "-n", ns)
    assert obj["metadata"]["generation"] == 1
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"
    assert obj["spec"]["revisionHistoryLimit"] == 10
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"

    wide = server.kubectl("get", "deploy", "shop", "-n", ns, "-o", "wide").stdout
    assert header(wide) == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    [row] = table(wide)
    assert row["READY"] == "0/2"
    assert row["CONTAINERS"] == "web,sidecar"
    assert row["IMAGES"] == "nginx:1.27,busybox:1.36"
    assert row["SELECTOR"] == "app=shop"


def test_all_namespaces_lists_namespace_column(server: KubevisorServer, ns: str) -> None:
    server.create_configmap("everywhere", ns, {"a": "b"})
    out = server.kubectl("get", "configmaps", "-A").stdout
    assert header(out) == ["NAMESPACE", "NAME", "DATA", "AGE"]
    rows = [row for row in table(out) if row["NAMESPACE"] == ns]
    assert [(r["NAME"], r["DATA"]) for r in rows] == [("everywhere", "1")]


def test_label_selectors_show_labels_and_label_columns(server: KubevisorServer, ns: str) -> None:
    for name, labels in [
        ("a", {"app": "web", "tier": "front"}),
        ("b", {"app": "db", "tier": "back"}),
        ("c", {"tier": "back"}),
    ]:
        server.kubectl(
            "create", "-f", "-", input=manifests.configmap(name, namespace=ns, labels=labels)
        )

    def names(*selector: str) -> list[str]:
        out = server.kubectl("get", "cm", "-n", ns, *selector, "-o", "name").stdout
        return sorted(line.removeprefix("configmap/") for line in out.split())

    assert names("-l", "app=web") == ["a"]
    assert names("-l", "app!=web") == ["b", "c"]  # != also matches objects without the label
    assert names("-l", "app in (web,db)") == ["a", "b"]
    assert names("-l", "app notin (web)") == ["b", "c"]
    assert names("-l", "app") == ["a", "b"]
    assert names("-l", "!app") == ["c"]
    assert names("-l", "tier=back,app") == ["b"]
    assert names("--field-selector", "metadata.name=b") == ["b"]
    assert names("--field-selector", "metadata.name!=b", "-l", "tier") == ["a", "c"]
    assert names("-l", "app=nothing") == []
    empty = server.kubectl("get", "cm", "-n", ns, "-l", "app=nothing")
    assert f"No resources found in {ns} namespace." in empty.stderr

    shown = server.kubectl("get", "cm", "a", "-n", ns, "--show-labels").stdout
    assert header(shown) == ["NAME", "DATA", "AGE", "LABELS"]
    assert table(shown)[0]["LABELS"] == "app=web,tier=front"
    cols = server.kubectl("get", "cm", "-n", ns, "-L", "app", "-L", "tier", "-l", "tier").stdout
    assert header(cols) == ["NAME", "DATA", "AGE", "APP", "TIER"]
    by_name = {row["NAME"]: row for row in table(cols)}
    assert by_name["b"]["APP"] == "db" and by_name["c"]["TIER"] == "back"

    bad = server.kubectl("get", "cm", "-n", ns, "-l", "app in (", check=False)
    assert bad.returncode != 0


def test_describe(server: KubevisorServer, ns: str) -> None:
    server.kubectl(
        "create", "-f", "-", input=manifests.pod("desc", namespace=ns, labels={"app": "x"})
    )
    out = server.kubectl("describe", "pod", "desc", "-n", ns).stdout
    assert re.search(r"^Name:\s+desc$", out, re.M), out
    assert re.search(rf"^Namespace:\s+{ns}$", out, re.M), out
    assert re.search(r"^Labels:\s+app=x$", out, re.M), out
    assert re.search(r"^Status:\s+Pending$", out, re.M), out
    assert re.search(r"^\s+Image:\s+nginx:1.27$", out, re.M), out
    assert "Events:" in out

    server.apply_yaml(manifests.deployment("descd", namespace=ns, replicas=3))
    out = server.kubectl("describe", "deployment", "descd", "-n", ns).stdout
    assert re.search(r"^Replicas:\s+3 desired", out, re.M), out
    assert re.search(r"^StrategyType:\s+RollingUpdate$", out, re.M), out


def test_label_and_annotate(server: KubevisorServer, ns: str) -> None:
    server.create_configmap("tagged", ns)
    assert server.kubectl("label", "cm", "tagged", "-n", ns, "env=prod").stdout.strip() == (
        "configmap/tagged labeled"
    )
    clash = server.kubectl("label", "cm", "tagged", "-n", ns, "env=dev", check=False)
    assert clash.returncode != 0
    assert "already has a value (prod)" in clash.stderr, clash.stderr
    server.kubectl("label", "cm", "tagged", "-n", ns, "env=dev", "--overwrite")
    labels = server.kubectl_json("get", "cm", "tagged", "-n", ns)["metadata"]["labels"]
    assert labels == {"env": "dev"}
    assert server.kubectl("label", "cm", "tagged", "-n", ns, "env-").stdout.strip() == (
        "configmap/tagged unlabeled"
    )
    assert server.kubectl_json("get", "cm", "tagged", "-n", ns)["metadata"].get("labels", {}) == {}

    out = server.kubectl("annotate", "cm", "tagged", "-n", ns, "owner=team-a").stdout
    assert out.strip() == "configmap/tagged annotated"
    server.kubectl("annotate", "cm", "tagged", "-n", ns, "note=hello world")
    annotations = server.kubectl_json("get", "cm", "tagged", "-n", ns)["metadata"]["annotations"]
    assert annotations == {"owner": "team-a", "note": "hello world"}
    server.kubectl("annotate", "cm", "tagged", "-n", ns, "owner-")
    annotations = server.kubectl_json("get", "cm", "tagged", "-n", ns)["metadata"]["annotations"]
    assert annotations == {"note": "hello world"}


def settled(server: KubevisorServer, ns: str, what: str) -> None:
    """Wait until the controllers have observed ``what``'s generation and stopped
    writing it (its resourceVersion unchanged for a second)."""
    seen: list[str] = []

    def unchanged() -> bool:
        meta_status = server.kubectl_json("get", what, "-n", ns)
        meta, status = meta_status["metadata"], meta_status.get("status") or {}
        seen.append(meta["resourceVersion"])
        observed = status.get("observedGeneration") == meta["generation"]
        return observed and len(seen) > 1 and seen[-1] == seen[-2]

    wait_until(unchanged, timeout=30, interval=1.0, what=f"the controllers to settle {what}")


def test_patch_strategic_merge_and_json(server: KubevisorServer, ns: str) -> None:
    server.apply_yaml(manifests.deployment("pat", namespace=ns, replicas=1))
    before = server.kubectl_json("get", "deploy", "pat", "-n", ns)

    # strategic (kubectl's default): containers merge by name, the sidecar stays
    out = server.kubectl(
        "patch",
        "deploy",
        "pat",
        "-n",
        ns,
        "-p",
        json.dumps(
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}
                }
            }
        ),
    ).stdout
    assert out.strip() == "deployment.apps/pat patched"
    obj = server.kubectl_json("get", "deploy", "pat", "-n", ns)
    containers = {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}
    assert containers == {"web": "nginx:1.28", "sidecar": "busybox:1.36"}
    assert obj["metadata"]["generation"] == before["metadata"]["generation"] + 1

    # the same patch again changes nothing (kubectl compares the object it read
    # with the patch's answer, so the deployment controller must be done first)
    settled(server, ns, "deploy/pat")
    again = server.kubectl(
        "patch",
        "deploy",
        "pat",
        "-n",
        ns,
        "-p",
        json.dumps(
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}
                }
            }
        ),
    ).stdout
    assert again.strip() == "deployment.apps/pat patched (no change)"

    # strategic $patch: delete removes one list element by merge key
    server.kubectl(
        "patch",
        "deploy",
        "pat",
        "-n",
        ns,
        "-p",
        json.dumps(
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}
                }
            }
        ),
    )
    obj = server.kubectl_json("get", "deploy", "pat", "-n", ns)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["web"]

    # merge patch: lists are replaced wholesale, null deletes a key
    server.kubectl(
        "patch",
        "deploy",
        "pat",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        json.dumps({"metadata": {"labels": {"patched": "yes", "app": None}}}),
    )
    obj = server.kubectl_json("get", "deploy", "pat", "-n", ns)
    assert obj["metadata"]["labels"] == {"patched": "yes"}
    generation = obj["metadata"]["generation"]  # metadata-only change: no bump
    assert generation == before["metadata"]["generation"] + 2

    # json patch
    server.kubectl(
        "patch",
        "deploy",
        "pat",
        "-n",
        ns,
        "--type",
        "json",
        "-p",
        json.dumps(
            [
                {"op": "replace", "path": "/spec/replicas", "value": 4},
                {"op": "add", "path": "/metadata/annotations", "value": {"j": "p"}},
            ]
        ),
    )
    obj = server.kubectl_json("get", "deploy", "pat", "-n", ns)
    assert obj["spec"]["replicas"] == 4
    assert obj["metadata"]["annotations"]["j"] == "p"
    assert obj["metadata"]["generation"] == generation + 1

    failed = server.kubectl(
        "patch",
        "deploy",
        "pat",
        "-n",
        ns,
        "--type",
        "json",
        "-p",
        json.dumps([{"op": "test", "path": "/spec/replicas", "value": 99}]),
        check=False,
    )
    assert failed.returncode != 0
    assert "invalid" in failed.stderr.lower(), failed.stderr

    missing = server.kubectl("patch", "cm", "ghost", "-n", ns, "-p", "{}", check=False)
    assert missing.returncode != 0
    assert 'Error from server (NotFound): configmaps "ghost" not found' in missing.stderr


def test_scale(server: KubevisorServer, ns: str) -> None:
    server.apply_yaml(manifests.deployment("sc", namespace=ns, replicas=2))
    out = server.kubectl("scale", "deployment", "sc", "-n", ns, "--replicas=5").stdout
    assert out.strip() == "deployment.apps/sc scaled"
    assert server.kubectl_json("get", "deploy", "sc", "-n", ns)["spec"]["replicas"] == 5
    scale = json.loads(
        server.kubectl("get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments/sc/scale").stdout
    )
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 5
    wrong = server.kubectl(
        "scale", "deployment", "sc", "-n", ns, "--current-replicas=3", "--replicas=1", check=False
    )
    assert wrong.returncode != 0
    assert "Expected replicas to be 3, was 5" in wrong.stderr, wrong.stderr
    assert server.kubectl_json("get", "deploy", "sc", "-n", ns)["spec"]["replicas"] == 5


def editor_script(tmp_path: Path, sed: str) -> str:
    script = tmp_path / "editor.sh"
    script.write_text(f"#!/bin/sh\nexec sed -i -e '{sed}' \"$1\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_edit_with_kube_editor(server: KubevisorServer, ns: str, tmp_path: Path) -> None:
    server.apply_yaml(manifests.deployment("ed", namespace=ns, replicas=1))
    editor = editor_script(tmp_path, "s/image: nginx:1.27/image: nginx:1.29/")
    out = server.kubectl("edit", "deployment", "ed", "-n", ns, env={"KUBE_EDITOR": editor}).stdout
    assert out.strip() == "deployment.apps/ed edited"
    obj = server.kubectl_json("get", "deploy", "ed", "-n", ns)
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.29"

    noop = server.kubectl(
        "edit", "deployment", "ed", "-n", ns, env={"KUBE_EDITOR": editor_script(tmp_path, "s/x/x/")}
    )
    assert "Edit cancelled, no changes made." in noop.stdout + noop.stderr

    broken = server.kubectl(
        "edit",
        "deployment",
        "ed",
        "-n",
        ns,
        env={"KUBE_EDITOR": editor_script(tmp_path, "s/replicas: 1/replicas: lots/")},
        check=False,
    )
    assert broken.returncode != 0
    assert server.kubectl_json("get", "deploy", "ed", "-n", ns)["spec"]["replicas"] == 1
    assert os.path.exists(editor)


def test_replace_and_conflict(server: KubevisorServer, ns: str) -> None:
    server.kubectl(
        "create", "-f", "-", input=manifests.configmap("rep", namespace=ns, data={"k": "v1"})
    )
    current = server.kubectl_json("get", "cm", "rep", "-n", ns)
    current["data"] = {"k": "v2"}
    out = server.kubectl("replace", "-f", "-", input=json.dumps(current)).stdout
    assert out.strip() == "configmap/rep replaced"
    # replaying the same (now stale) resourceVersion is a conflict
    current["data"] = {"k": "v3"}
    stale = server.kubectl("replace", "-f", "-", input=json.dumps(current), check=False)
    assert stale.returncode != 0
    assert (
        'Operation cannot be fulfilled on configmaps "rep": the object has been modified; '
        "please apply your changes to the latest version and try again"
    ) in stale.stderr, stale.stderr
    assert server.kubectl_json("get", "cm", "rep", "-n", ns)["data"] == {"k": "v2"}


def test_delete_and_not_found(server: KubevisorServer, ns: str) -> None:
    server.create_configmap("gone", ns)
    out = server.kubectl("delete", "configmap", "gone", "-n", ns).stdout
    assert out.strip() == 'configmap "gone" deleted'
    missing = server.kubectl("get", "configmap", "gone", "-n", ns, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'Error from server (NotFound): configmaps "gone" not found'
    again = server.kubectl("delete", "configmap", "gone", "-n", ns, check=False)
    assert 'Error from server (NotFound): configmaps "gone" not found' in again.stderr
    ignored = server.kubectl("delete", "configmap", "gone", "-n", ns, "--ignore-not-found")
    assert ignored.returncode == 0

    for i in range(3):
        server.create_configmap(f"bulk-{i}", ns, {"i": "x"})
        server.kubectl("label", "configmap", f"bulk-{i}", "-n", ns, "batch=one")
    deleted = server.kubectl("delete", "configmap", "-n", ns, "-l", "batch=one").stdout
    assert sorted(deleted.splitlines()) == [f'configmap "bulk-{i}" deleted' for i in range(3)]


def test_create_errors(server: KubevisorServer, ns: str) -> None:
    manifest = manifests.configmap("twice", namespace=ns)
    server.kubectl("create", "-f", "-", input=manifest)
    dup = server.kubectl("create", "-f", "-", input=manifest, check=False)
    assert dup.returncode == 1
    assert dup.stderr.strip() == (
        'Error from server (AlreadyExists): error when creating "STDIN": '
        'configmaps "twice" already exists'
    ), dup.stderr
    nowhere = server.kubectl(
        "create",
        "-f",
        "-",
        input=manifests.configmap("x", namespace="no-such-ns-e2e"),
        check=False,
    )
    assert nowhere.returncode == 1
    assert 'namespaces "no-such-ns-e2e" not found' in nowhere.stderr, nowhere.stderr


def test_create_generator_commands(server: KubevisorServer, ns: str) -> None:
    """``kubectl create <kind>`` builds typed objects (kubectl v1.32 sends
    them as protobuf, which kube-apiserver accepts for built-in kinds)."""
    extra_ns = f"{ns}-gen"
    assert server.kubectl("create", "namespace", extra_ns).stdout.strip() == (
        f"namespace/{extra_ns} created"
    )
    out = server.kubectl("create", "configmap", "gen-cm", "-n", ns, "--from-literal=k=v").stdout
    assert out.strip() == "configmap/gen-cm created"
    assert server.kubectl_json("get", "cm", "gen-cm", "-n", ns)["data"] == {"k": "v"}
    out = server.kubectl(
        "create", "secret", "generic", "gen-secret", "-n", ns, "--from-literal=k=v"
    ).stdout
    assert out.strip() == "secret/gen-secret created"
    assert server.kubectl_json("get", "secret", "gen-secret", "-n", ns)["data"] == {"k": "dg=="}
    out = server.kubectl(
        "create", "deployment", "gen-dep", "-n", ns, "--image=nginx:1.27", "--replicas=2"
    ).stdout
    assert out.strip() == "deployment.apps/gen-dep created"
    out = server.kubectl("create", "serviceaccount", "gen-sa", "-n", ns).stdout
    assert out.strip() == "serviceaccount/gen-sa created"
    dup = server.kubectl("create", "configmap", "gen-cm", "-n", ns, check=False)
    assert dup.returncode == 1
    assert dup.stderr.strip() == (
        'error: failed to create configmap: configmaps "gen-cm" already exists'
    ), dup.stderr
    server.kubectl("delete", "namespace", extra_ns, "--wait=false")


def test_generate_name_dry_run_and_chunked_list(server: KubevisorServer, ns: str) -> None:
    manifest = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"generateName": "gen-", "namespace": ns},
            "data": {"a": "b"},
        }
    )
    out = server.kubectl("create", "-f", "-", input=manifest).stdout.strip()
    assert re.fullmatch(r"configmap/gen-[a-z0-9]{5} created", out), out

    dry = server.create_configmap("dry", ns, None, "--dry-run=server").stdout
    assert dry.strip() == "configmap/dry created (server dry run)"
    assert server.kubectl("get", "cm", "dry", "-n", ns, check=False).returncode == 1

    for i in range(7):
        server.create_configmap(f"page-{i}", ns)
    chunked = server.kubectl("get", "cm", "-n", ns, "--chunk-size=2", "-o", "name").stdout.split()
    assert sorted(n for n in chunked if n.startswith("configmap/page-")) == [
        f"configmap/page-{i}" for i in range(7)
    ]
    listing = json.loads(
        server.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?limit=3").stdout
    )
    assert len(listing["items"]) == 3
    assert listing["metadata"]["continue"]
    assert listing["metadata"]["remainingItemCount"] >= 5
