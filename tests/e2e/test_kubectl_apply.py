"""``kubectl apply``: client-side (last-applied three-way patches) and
server-side (field managers, conflicts, ``--force-conflicts``), repeated
until they converge, plus ``kubectl diff``."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e import manifests
from tests.support.server import KubevisorServer

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-kubectl-apply")


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _entries(obj: dict, manager: str) -> list[dict]:
    """The managedFields entries of ``manager`` (their times move on every write of it)."""
    return [m for m in obj["metadata"].get("managedFields") or [] if m["manager"] == manager]


def test_client_side_apply_converges(server: KubevisorServer, ns: str) -> None:
    manifest = manifests.deployment(
        "csa", namespace=ns, replicas=2, labels={"app": "csa", "x": "1"}
    )
    assert server.apply_yaml(manifest).strip() == "deployment.apps/csa created"
    first = server.kubectl_json("get", "deploy", "csa", "-n", ns, "--show-managed-fields")
    assert LAST_APPLIED in first["metadata"]["annotations"]

    for _ in range(2):
        assert server.apply_yaml(manifest).strip() == "deployment.apps/csa unchanged"
    same = server.kubectl_json("get", "deploy", "csa", "-n", ns, "--show-managed-fields")
    # kubectl wrote nothing more (the Deployment controller's own writes may follow)
    assert same["metadata"]["generation"] == first["metadata"]["generation"] == 1
    assert _entries(same, "kubectl-client-side-apply") == _entries(first, "kubectl-client-side-apply")

    # a field set by someone else survives; a field dropped from the manifest is removed
    server.kubectl("label", "deploy", "csa", "-n", ns, "added-by-hand=yes")
    changed = manifests.deployment("csa", namespace=ns, replicas=3, labels={"app": "csa"})
    assert server.apply_yaml(changed).strip() == "deployment.apps/csa configured"
    obj = server.kubectl_json("get", "deploy", "csa", "-n", ns)
    assert obj["metadata"]["labels"] == {"app": "csa", "added-by-hand": "yes"}
    assert obj["spec"]["replicas"] == 3
    assert obj["metadata"]["generation"] == 2
    assert server.apply_yaml(changed).strip() == "deployment.apps/csa unchanged"

    # removing a container from the manifest removes it (three-way, merge key "name")
    one_container = changed.split("      - name: sidecar")[0]
    assert server.apply_yaml(one_container).strip() == "deployment.apps/csa configured"
    obj = server.kubectl_json("get", "deploy", "csa", "-n", ns)
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert server.apply_yaml(one_container).strip() == "deployment.apps/csa unchanged"


def test_client_side_apply_of_configmap_and_prune_of_keys(server: KubevisorServer, ns: str) -> None:
    v1 = manifests.configmap("cfg", namespace=ns, data={"a": "1", "b": "2"})
    assert server.apply_yaml(v1).strip() == "configmap/cfg created"
    assert server.apply_yaml(v1).strip() == "configmap/cfg unchanged"
    v2 = manifests.configmap("cfg", namespace=ns, data={"a": "1", "c": "3"})
    assert server.apply_yaml(v2).strip() == "configmap/cfg configured"
    assert server.kubectl_json("get", "cm", "cfg", "-n", ns)["data"] == {"a": "1", "c": "3"}


def test_server_side_apply_twice_converges(server: KubevisorServer, ns: str) -> None:
    manifest = manifests.deployment("ssa", namespace=ns, replicas=2)
    out = server.apply_yaml(manifest, "--server-side")
    assert out.strip() == "deployment.apps/ssa serverside-applied"
    first = server.kubectl_json("get", "deploy", "ssa", "-n", ns, "--show-managed-fields")
    managers = {(m["manager"], m["operation"]) for m in first["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers
    assert LAST_APPLIED not in first["metadata"].get("annotations", {})

    again = server.apply_yaml(manifest, "--server-side")
    assert again.strip() == "deployment.apps/ssa serverside-applied"
    second = server.kubectl_json("get", "deploy", "ssa", "-n", ns, "--show-managed-fields")
    # a no-op apply writes nothing (kube-apiserver skips unchanged objects);
    # the Deployment controller's status writes may come in between
    assert _entries(second, "kubectl") == _entries(first, "kubectl")
    assert second["metadata"]["generation"] == 1

    changed = manifests.deployment("ssa", namespace=ns, replicas=4)
    server.apply_yaml(changed, "--server-side")
    obj = server.kubectl_json("get", "deploy", "ssa", "-n", ns)
    assert obj["spec"]["replicas"] == 4
    assert obj["metadata"]["generation"] == 2


def test_server_side_apply_conflict_and_force(server: KubevisorServer, ns: str) -> None:
    server.apply_yaml(
        manifests.configmap("owned", namespace=ns, data={"key": "alice"}),
        "--server-side",
        "--field-manager=alice",
    )
    clash = server.kubectl(
        "apply",
        "--server-side",
        "--field-manager=bob",
        "-f",
        "-",
        input=manifests.configmap("owned", namespace=ns, data={"key": "bob"}),
        check=False,
    )
    assert clash.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "alice": .data.key' in clash.stderr, (
        clash.stderr
    )
    assert "--force-conflicts" in clash.stderr
    assert server.kubectl_json("get", "cm", "owned", "-n", ns)["data"] == {"key": "alice"}

    # the same value is shared ownership, not a conflict
    shared = server.kubectl(
        "apply",
        "--server-side",
        "--field-manager=carol",
        "-f",
        "-",
        input=manifests.configmap("owned", namespace=ns, data={"key": "alice"}),
    )
    assert shared.stdout.strip() == "configmap/owned serverside-applied"

    forced = server.kubectl(
        "apply",
        "--server-side",
        "--field-manager=bob",
        "--force-conflicts",
        "-f",
        "-",
        input=manifests.configmap("owned", namespace=ns, data={"key": "bob"}),
    )
    assert forced.stdout.strip() == "configmap/owned serverside-applied"
    obj = server.kubectl_json("get", "cm", "owned", "-n", ns, "--show-managed-fields")
    assert obj["data"] == {"key": "bob"}
    owners = {
        m["manager"]
        for m in obj["metadata"]["managedFields"]
        if "f:key" in m.get("fieldsV1", {}).get("f:data", {})
    }
    assert owners == {"bob"}


def test_server_side_apply_conflict_with_update_manager(server: KubevisorServer, ns: str) -> None:
    server.apply_yaml(manifests.deployment("mix", namespace=ns, replicas=1), "--server-side")
    server.kubectl("scale", "deploy", "mix", "-n", ns, "--replicas=3")
    clash = server.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        input=manifests.deployment("mix", namespace=ns, replicas=5),
        check=False,
    )
    assert clash.returncode == 1
    assert "conflict with" in clash.stderr and ".spec.replicas" in clash.stderr, clash.stderr
    server.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=manifests.deployment("mix", namespace=ns, replicas=5),
    )
    assert server.kubectl_json("get", "deploy", "mix", "-n", ns)["spec"]["replicas"] == 5


@pytest.mark.skipif(shutil.which("diff") is None, reason="kubectl diff needs diff(1)")
def test_diff_uses_server_dry_run(server: KubevisorServer, ns: str) -> None:
    manifest = manifests.configmap("dif", namespace=ns, data={"a": "1"})
    server.apply_yaml(manifest, "--server-side")
    same = server.kubectl("diff", "-f", "-", "--server-side", input=manifest, check=False)
    assert same.returncode == 0, same.stderr
    changed = manifests.configmap("dif", namespace=ns, data={"a": "2"})
    differs = server.kubectl("diff", "-f", "-", "--server-side", input=changed, check=False)
    assert differs.returncode == 1, differs.stderr
    assert '-  a: "1"' in differs.stdout and '+  a: "2"' in differs.stdout, differs.stdout
    assert server.kubectl_json("get", "cm", "dif", "-n", ns)["data"] == {"a": "1"}
