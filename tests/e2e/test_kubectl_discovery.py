"""kubectl's view of the server: version, health, api-versions,
api-resources and explain (discovery and OpenAPI v3), as kube-apiserver
answers them."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.server import KubevisorServer

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-kubectl-discovery")


def api_resources(server: KubevisorServer, *args: str) -> dict[str, list[str]]:
    """NAME -> [SHORTNAMES?, APIVERSION, NAMESPACED, KIND] from `kubectl api-resources`."""
    out = server.kubectl("api-resources", *args).stdout.splitlines()
    header = out[0].split()
    assert header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], out[0]
    rows: dict[str, list[str]] = {}
    for line in out[1:]:
        cells = line.split()
        rows.setdefault(cells[0], cells[1:])
    return rows


def test_health_and_version(server: KubevisorServer) -> None:
    for path in ("/readyz", "/livez", "/healthz"):
        assert server.kubectl("get", "--raw", path).stdout.strip() == "ok"
    version = json.loads(server.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["major"] == "1"
    assert re.fullmatch(r"v1\.\d+\.\d+.*", version["serverVersion"]["gitVersion"])


@pytest.mark.parametrize(
    ("name", "short", "api_version", "namespaced", "kind"),
    [
        ("pods", "po", "v1", "true", "Pod"),
        ("namespaces", "ns", "v1", "false", "Namespace"),
        ("nodes", "no", "v1", "false", "Node"),
        ("services", "svc", "v1", "true", "Service"),
        ("configmaps", "cm", "v1", "true", "ConfigMap"),
        ("serviceaccounts", "sa", "v1", "true", "ServiceAccount"),
        ("persistentvolumeclaims", "pvc", "v1", "true", "PersistentVolumeClaim"),
        ("deployments", "deploy", "apps/v1", "true", "Deployment"),
        ("replicasets", "rs", "apps/v1", "true", "ReplicaSet"),
        ("statefulsets", "sts", "apps/v1", "true", "StatefulSet"),
        ("daemonsets", "ds", "apps/v1", "true", "DaemonSet"),
        (
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
            "false",
            "CustomResourceDefinition",
        ),
        ("storageclasses", "sc", "storage.k8s.io/v1", "false", "StorageClass"),
    ],
)
def test_api_resources_lists_kinds_with_short_names(
    server: KubevisorServer, name: str, short: str, api_version: str, namespaced: str, kind: str
) -> None:
    rows = api_resources(server)
    assert rows.get(name) == [short, api_version, namespaced, kind], rows.get(name)


def test_api_resources_without_short_names_and_filters(server: KubevisorServer) -> None:
    rows = api_resources(server)
    assert rows["secrets"] == ["v1", "true", "Secret"]
    assert rows["leases"] == ["coordination.k8s.io/v1", "true", "Lease"]
    assert rows["roles"] == ["rbac.authorization.k8s.io/v1", "true", "Role"]
    assert rows["clusterroles"] == ["rbac.authorization.k8s.io/v1", "false", "ClusterRole"]
    assert rows["runtimeclasses"] == ["node.k8s.io/v1", "false", "RuntimeClass"]
    cluster = server.kubectl("api-resources", "--namespaced=false", "-o", "name").stdout.split()
    assert {"namespaces", "nodes", "persistentvolumes", "storageclasses.storage.k8s.io"} <= set(
        cluster
    )
    assert "pods" not in cluster
    apps = server.kubectl("api-resources", "--api-group=apps", "-o", "name").stdout.split()
    assert {"daemonsets.apps", "deployments.apps", "replicasets.apps", "statefulsets.apps"} <= set(
        apps
    )
    assert all(name.endswith(".apps") for name in apps), apps
    wide = server.kubectl("api-resources", "-o", "wide").stdout
    pods_line = next(line for line in wide.splitlines() if line.startswith("pods "))
    for verb in ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"):
        assert verb in pods_line, pods_line


def test_api_versions(server: KubevisorServer) -> None:
    versions = set(server.kubectl("api-versions").stdout.split())
    assert {
        "v1",
        "apps/v1",
        "apiextensions.k8s.io/v1",
        "coordination.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "node.k8s.io/v1",
        "storage.k8s.io/v1",
    } <= versions


def test_explain_pod_spec_containers(server: KubevisorServer) -> None:
    out = server.kubectl("explain", "pod.spec.containers").stdout
    assert re.search(r"^KIND:\s+Pod$", out, re.M), out
    assert re.search(r"^VERSION:\s+v1$", out, re.M), out
    assert re.search(r"^FIELD:\s+containers\s+<\[\]Container>", out, re.M), out
    assert "DESCRIPTION:" in out
    assert re.search(r"^\s+image\s+<string>", out, re.M), out
    assert re.search(r"^\s+name\s+<string> -required-", out, re.M), out
    assert re.search(r"^\s+ports\s+<\[\]ContainerPort>", out, re.M), out


def test_explain_deployment_and_recursive(server: KubevisorServer) -> None:
    out = server.kubectl("explain", "deployments.spec.replicas").stdout
    assert re.search(r"^GROUP:\s+apps$", out, re.M), out
    assert re.search(r"^FIELD:\s+replicas\s+<integer>", out, re.M), out
    out = server.kubectl("explain", "configmap", "--recursive").stdout
    assert re.search(r"^\s+data\s+<map\[string\]string>", out, re.M), out
    assert re.search(r"^\s+metadata\s+<ObjectMeta>", out, re.M), out


def test_explain_unknown_field_is_an_error(server: KubevisorServer) -> None:
    result = server.kubectl("explain", "pod.spec.nosuchfield", check=False)
    assert result.returncode != 0
    assert 'field "nosuchfield" does not exist' in result.stderr, result.stderr


def test_explain_every_served_kind(server: KubevisorServer) -> None:
    """Every resource discovery lists has an OpenAPI v3 schema kubectl can explain."""
    out = server.kubectl("api-resources", "--no-headers", "-o", "wide").stdout
    failures = []
    for line in out.splitlines():
        name = line.split()[0]
        kind = next(cell for cell in line.split() if cell[0].isupper())
        result = server.kubectl("explain", name, check=False)
        if result.returncode != 0 or not re.search(rf"^KIND:\s+{kind}$", result.stdout, re.M):
            failures.append((name, result.stderr.strip()[:200] or result.stdout[:200]))
    assert not failures, failures


def test_get_every_listable_resource_at_once(server: KubevisorServer) -> None:
    names = server.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    assert len(names) >= 25, names
    for args in ((), ("-o", "wide"), ("-o", "name")):
        result = server.kubectl("get", ",".join(names), "-A", *args, check=False)
        assert result.returncode == 0, (args, result.stderr)
    out = server.kubectl("get", ",".join(names), "-A", "-o", "name").stdout.split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= set(out)
