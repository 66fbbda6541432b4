"""The real kubectl v1.32 against the app served by uvicorn (HTTPS, token):
the thin path every user takes, including kubectl's protobuf bodies."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

KUBECTL = "/usr/bin/kubectl"


class Kubectl:
    def __init__(self, url: Any, cache: Path) -> None:
        self.base = [KUBECTL, "--kubeconfig", str(url.kubeconfig), "--cache-dir", str(cache)]

    async def __call__(self, *args: str, stdin: str | None = None, ok: bool = True) -> str:
        proc = await asyncio.to_thread(
            subprocess.run, [*self.base, *args], input=stdin, capture_output=True, text=True,
            timeout=60)
        if ok:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout + proc.stderr


@pytest.fixture
def kubectl(served: Any, tmp_path: Path) -> Kubectl:
    return Kubectl(served, tmp_path / "kcache")


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: nginx}]
"""


async def test_typed_creates_and_gets(kubectl: Kubectl) -> None:
    assert "namespace/demo created" in await kubectl("create", "namespace", "demo")
    await kubectl("create", "configmap", "cfg", "-n", "demo", "--from-literal=a=b")
    await kubectl("create", "secret", "generic", "sec", "-n", "demo", "--from-literal=p=q")
    await kubectl("create", "deployment", "dep", "-n", "demo", "--image=nginx", "--replicas=2")
    assert await kubectl("get", "secret", "sec", "-n", "demo", "-o",
                         "jsonpath={.data.p}") == "cQ=="
    out = await kubectl("get", "cm", "-A", "--show-labels")
    assert out.splitlines()[0].split() == ["NAMESPACE", "NAME", "DATA", "AGE", "LABELS"]
    out = await kubectl("get", "deploy", "-n", "demo", "-o", "wide", "-L", "app")
    header = out.splitlines()[0].split()
    assert header[:2] == ["NAME", "READY"] and "SELECTOR" in header and header[-1] == "APP"
    assert "dep" in out.splitlines()[1]


async def test_apply_patch_scale_delete(kubectl: Kubectl) -> None:
    await kubectl("create", "namespace", "demo")
    assert "created" in await kubectl("apply", "-f", "-", stdin=DEPLOY)
    assert "unchanged" in await kubectl("apply", "-f", "-", stdin=DEPLOY)
    assert "serverside-applied" in await kubectl("apply", "--server-side", "-f", "-",
                                                 stdin=DEPLOY.replace("web", "ssa"))
    assert "serverside-applied" in await kubectl("apply", "--server-side", "-f", "-",
                                                 stdin=DEPLOY.replace("web", "ssa"))
    await kubectl("scale", "deploy/web", "-n", "demo", "--replicas=4")
    await kubectl("patch", "deploy/web", "-n", "demo", "-p",
                  '{"metadata":{"labels":{"s":"1"}}}')
    await kubectl("patch", "deploy/web", "-n", "demo", "--type=merge", "-p",
                  '{"metadata":{"labels":{"m":"1"}}}')
    await kubectl("patch", "deploy/web", "-n", "demo", "--type=json", "-p",
                  '[{"op":"add","path":"/metadata/labels/j","value":"1"}]')
    await kubectl("label", "deploy/web", "-n", "demo", "l=1")
    await kubectl("annotate", "deploy/web", "-n", "demo", "note=x")
    out = await kubectl("get", "deploy/web", "-n", "demo", "-o",
                        "jsonpath={.spec.replicas} {.metadata.labels.s}{.metadata.labels.m}"
                        "{.metadata.labels.j}{.metadata.labels.l} {.metadata.generation}")
    assert out == "4 1111 2"
    await kubectl("wait", "--for=jsonpath={.spec.replicas}=4", "deploy/web", "-n", "demo",
                  "--timeout=5s")
    assert 'deployment.apps "web" deleted' in await kubectl("delete", "deploy/web", "-n", "demo")
    out = await kubectl("get", "deploy/web", "-n", "demo", ok=False)
    assert 'deployments.apps "web" not found' in out


async def test_watch_and_invalid(kubectl: Kubectl) -> None:
    await kubectl("create", "namespace", "demo")
    watch = asyncio.create_task(kubectl("get", "cm", "-n", "demo", "-w",
                                        "--request-timeout=3s", ok=False))
    await asyncio.sleep(1.0)
    await kubectl("create", "configmap", "late", "-n", "demo")
    out = await watch
    assert "late" in out
    bad = DEPLOY.replace("image: nginx", "image: ''")
    out = await kubectl("apply", "-f", "-", stdin=bad, ok=False)
    assert 'The Deployment "web" is invalid' in out
    out = await kubectl("apply", "-f", "-", stdin=DEPLOY.replace("replicas: 2", "replicas: 2\n  bogus: 1"),
                        ok=False)
    assert 'unknown field "spec.bogus"' in out


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
"""


async def test_crd_and_discovery(kubectl: Kubectl) -> None:
    out = await kubectl("api-resources")
    assert "deployments" in out and "customresourcedefinitions" in out
    assert "containers" in await kubectl("explain", "pod.spec.containers")
    await kubectl("create", "namespace", "demo")
    await kubectl("apply", "-f", "-", stdin=CRD)
    await kubectl("wait", "--for", "condition=established", "crd/gadgets.example.com",
                  "--timeout=10s")
    await kubectl("apply", "-f", "-", stdin="apiVersion: example.com/v1\nkind: Gadget\n"
                  "metadata: {name: g1, namespace: demo}\nspec: {size: 7}\n")
    out = await kubectl("get", "gd", "-n", "demo")
    assert out.splitlines()[0].split() == ["NAME", "SIZE"]
    assert out.splitlines()[1].split() == ["g1", "7"]
    assert "size" in await kubectl("explain", "gadget.spec")
