"""The generated OpenAPI v3 documents, read by the real kubectl (explain,
server-side strict validation) through a discovery/OpenAPI stub."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kubevisor.api import crd as crd_mod
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.kinds import Registry
from tests.api.stub_server import serve

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"]},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {
                    "type": "object",
                    "description": "WidgetSpec is what the widget should be.",
                    "properties": {"size": {"type": "integer", "description": "How big."}},
                }},
            }},
        }],
    },
}


def _kubectl(url: str, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run([KUBECTL, "--server", url, "--cache-dir", str(cache),
                           "--kubeconfig", "/dev/null", *args],
                          capture_output=True, text=True, timeout=60)


def _registry() -> Registry:
    registry = builtin_registry()
    for rt in crd_mod.resource_types(WIDGET_CRD):
        registry.add(rt)
    return registry


def test_explain_builtin_and_custom(tmp_path: Path) -> None:
    with serve(_registry()) as url:
        out = _kubectl(url, tmp_path, "explain", "pod.spec.containers")
        assert out.returncode == 0, out.stderr
        assert "FIELD: containers <[]Container>" in out.stdout
        assert "imagePullPolicy\t<string>" in out.stdout
        out = _kubectl(url, tmp_path, "explain", "deployments.spec.template.spec")
        assert out.returncode == 0, out.stderr
        assert "GROUP:      apps" in out.stdout
        out = _kubectl(url, tmp_path, "explain", "wd.spec")
        assert out.returncode == 0, out.stderr
        assert "KIND:       Widget" in out.stdout
        assert "size\t<integer>" in out.stdout
        assert "WidgetSpec is what the widget should be." in out.stdout


def test_kubectl_sends_strict_field_validation(tmp_path: Path) -> None:
    writes: list[str] = []
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n---\n"
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\n"
        "spec: {size: 3}\n")
    with serve(_registry(), writes) as url:
        out = _kubectl(url, tmp_path, "create", "-f", str(manifest))
    assert out.returncode == 0, out.stderr
    assert len(writes) == 2
    assert all("fieldValidation=Strict" in w for w in writes), writes


def test_client_side_apply_finds_patch_merge_keys(tmp_path: Path) -> None:
    """kubectl apply computes a strategic merge patch from the served schema:
    the ``$setElementOrder`` directive shows it found containers' merge key."""
    writes: list[str] = []
    manifest = tmp_path / "deploy.yaml"
    deploy = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n"
        "spec:\n  selector: {matchLabels: {app: web}}\n  template:\n"
        "    metadata: {labels: {app: web}}\n    spec:\n      containers:\n"
        "      - {name: a, image: IMAGE}\n      - {name: b, image: busybox}\n")
    with serve(_registry(), writes) as url:
        manifest.write_text(deploy.replace("IMAGE", "nginx:1.27"))
        out = _kubectl(url, tmp_path, "apply", "-f", str(manifest))
        assert out.returncode == 0, out.stderr
        manifest.write_text(deploy.replace("IMAGE", "nginx:1.28"))
        out = _kubectl(url, tmp_path, "apply", "-f", str(manifest))
        assert out.returncode == 0, out.stderr
    assert writes[0].startswith("POST /apis/apps/v1/namespaces/default/deployments?")
    patch = writes[-1]
    assert patch.startswith("PATCH /apis/apps/v1/namespaces/default/deployments/web?"), patch
    assert "application/strategic-merge-patch+json" in patch, patch
    assert '"$setElementOrder/containers":[{"name":"a"},{"name":"b"}]' in patch, patch
    assert '"image":"nginx:1.28"' in patch


@pytest.mark.parametrize("serve_v2", [True, False])
def test_unknown_kind_reaches_the_rest_mapper(tmp_path: Path, serve_v2: bool) -> None:
    """kubectl's field-validation check falls back to the protobuf OpenAPI v2
    for kinds the v3 documents lack; with it, the user sees kube's message."""
    manifest = tmp_path / "bogus.yaml"
    manifest.write_text("apiVersion: v1\nkind: Bogus\nmetadata: {name: x, namespace: default}\n")
    with serve(_registry(), serve_v2=serve_v2) as url:
        out = _kubectl(url, tmp_path, "apply", "-f", str(manifest))
    assert out.returncode != 0
    if serve_v2:
        assert 'no matches for kind "Bogus" in version "v1"' in out.stderr, out.stderr
    else:
        assert "failed to download openapi" in out.stderr, out.stderr
