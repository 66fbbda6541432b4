"""``kubectl get`` and ``get -o wide`` for every built-in kind: the server's
Table columns are kube-apiserver's (pkg/printers of Kubernetes 1.32), and
no cell leaks a Python or Go representation of a structure."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.output import AGE, header, table
from tests.support.server import KubevisorServer, unique

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-kubectl-printers")

POD_SPEC = {"containers": [{"name": "c", "image": "nginx:1.27"}]}
TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": POD_SPEC}
SELECTOR = {"matchLabels": {"app": "x"}}

# plural -> (apiVersion, kind, namespaced, body, columns, wide columns)
KINDS: dict[str, tuple[str, str, bool, dict[str, Any], list[str], list[str]]] = {
    "services": (
        "v1", "Service", True,
        {"spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}},
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ["SELECTOR"],
    ),
    "endpoints": (
        "v1", "Endpoints", True,
        {"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]},
        ["NAME", "ENDPOINTS", "AGE"], [],
    ),
    "nodes": (
        "v1", "Node", False, {},
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"],
    ),
    "namespaces": ("v1", "Namespace", False, {}, ["NAME", "STATUS", "AGE"], []),
    "secrets": (
        "v1", "Secret", True, {"stringData": {"k": "v"}}, ["NAME", "TYPE", "DATA", "AGE"], []
    ),
    "serviceaccounts": ("v1", "ServiceAccount", True, {}, ["NAME", "SECRETS", "AGE"], []),
    "configmaps": ("v1", "ConfigMap", True, {"data": {"k": "v"}}, ["NAME", "DATA", "AGE"], []),
    "persistentvolumes": (
        "v1", "PersistentVolume", False,
        {"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "hostPath": {"path": "/tmp/x"}}},
        ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM",
         "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"],
        ["VOLUMEMODE"],
    ),
    "persistentvolumeclaims": (
        "v1", "PersistentVolumeClaim", True,
        {"spec": {"accessModes": ["ReadWriteOnce"],
                  "resources": {"requests": {"storage": "1Gi"}}}},
        ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS",
         "VOLUMEATTRIBUTESCLASS", "AGE"],
        ["VOLUMEMODE"],
    ),
    "limitranges": (
        "v1", "LimitRange", True,
        {"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}},
        ["NAME", "CREATED AT"], [],
    ),
    "replicasets": (
        "apps/v1", "ReplicaSet", True,
        {"spec": {"replicas": 1, "selector": SELECTOR, "template": TEMPLATE}},
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
    ),
    "statefulsets": (
        "apps/v1", "StatefulSet", True,
        {"spec": {"replicas": 1, "selector": SELECTOR, "template": TEMPLATE,
                  "serviceName": "x"}},
        ["NAME", "READY", "AGE"], ["CONTAINERS", "IMAGES"],
    ),
    "daemonsets": (
        "apps/v1", "DaemonSet", True,
        {"spec": {"selector": SELECTOR, "template": TEMPLATE}},
        ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR",
         "AGE"],
        ["CONTAINERS", "IMAGES", "SELECTOR"],
    ),
    "leases": (
        "coordination.k8s.io/v1", "Lease", True, {"spec": {"holderIdentity": "me"}},
        ["NAME", "HOLDER", "AGE"], [],
    ),
    "roles": (
        "rbac.authorization.k8s.io/v1", "Role", True,
        {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
        ["NAME", "CREATED AT"], [],
    ),
    "rolebindings": (
        "rbac.authorization.k8s.io/v1", "RoleBinding", True,
        {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
         "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]},
        ["NAME", "ROLE", "AGE"], ["USERS", "GROUPS", "SERVICEACCOUNTS"],
    ),
    "clusterroles": (
        "rbac.authorization.k8s.io/v1", "ClusterRole", False,
        {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
        ["NAME", "CREATED AT"], [],
    ),
    "clusterrolebindings": (
        "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", False,
        {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "r"},
         "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]},
        ["NAME", "ROLE", "AGE"], ["USERS", "GROUPS", "SERVICEACCOUNTS"],
    ),
    "runtimeclasses": (
        "node.k8s.io/v1", "RuntimeClass", False, {"handler": "runc"},
        ["NAME", "HANDLER", "AGE"], [],
    ),
    "storageclasses": (
        "storage.k8s.io/v1", "StorageClass", False, {"provisioner": "example.com/x"},
        ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION",
         "AGE"],
        [],
    ),
}  # fmt: skip

LEAKS = re.compile(r"map\[|\{'|\['|\bNone\b|<nil>|\btimestamp\b|\{\"")


@pytest.fixture(scope="module")
def printed_ns(server: KubevisorServer) -> Iterator[str]:
    name = unique("print")
    server.create_namespace(name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("plural", sorted(KINDS))
def test_get_prints_kube_columns(server: KubevisorServer, printed_ns: str, plural: str) -> None:
    api_version, kind, namespaced, body, columns, wide_columns = KINDS[plural]
    name = unique("p")
    metadata: dict[str, Any] = {"name": name, "labels": {"app": "x"}}
    if namespaced:
        metadata["namespace"] = printed_ns
    manifest = {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}
    server.kubectl("create", "-f", "-", input=json.dumps(manifest))
    where = ["-n", printed_ns] if namespaced else []
    try:
        out = server.kubectl("get", plural, name, *where).stdout
        assert header(out) == columns, out
        [row] = table(out)
        assert row["NAME"] == name
        if "AGE" in row:
            assert AGE.match(row["AGE"]), row
        if "CREATED AT" in row:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["CREATED AT"]), row
        assert not LEAKS.search(out), out

        wide = server.kubectl("get", plural, name, *where, "-o", "wide").stdout
        assert header(wide) == columns + wide_columns, wide
        assert not LEAKS.search(wide), wide
        labels = server.kubectl("get", plural, name, *where, "--show-labels").stdout
        # namespaces also carry kubernetes.io/metadata.name=<name>
        assert "app=x" in table(labels)[0]["LABELS"].split(","), labels
    finally:
        server.kubectl("delete", plural, name, *where, "--wait=false", check=False)


@pytest.mark.slow
def test_describe_every_kind(server: KubevisorServer, printed_ns: str) -> None:
    """kubectl describe uses typed clients and extra lookups; it must not fail."""
    for plural, (api_version, kind, namespaced, body, _columns, _wide) in sorted(KINDS.items()):
        name = unique("d")
        metadata: dict[str, Any] = {"name": name}
        if namespaced:
            metadata["namespace"] = printed_ns
        manifest = {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}
        server.kubectl("create", "-f", "-", input=json.dumps(manifest))
        where = ["-n", printed_ns] if namespaced else []
        result = server.kubectl("describe", plural, name, *where, check=False)
        server.kubectl("delete", plural, name, *where, "--wait=false", check=False)
        assert result.returncode == 0, (plural, result.stderr)
        assert re.search(rf"^Name:\s+{name}$", result.stdout, re.M), (plural, result.stdout)
