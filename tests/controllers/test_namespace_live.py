"""Deleting a namespace removes its content, custom resources included,
then the namespace itself; phase Terminating meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kubevisor.client import Client, NotFoundError

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                       "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}}]},
}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def gone(api: Client, api_version: str, kind: str, name: str,
               namespace: str | None = None) -> bool:
    try:
        await api.get(api_version, kind, name, namespace=namespace)
    except NotFoundError:
        return True
    return False


def pod(name: str, ns: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def test_namespace_deletion_removes_everything_then_the_namespace(api: Client) -> None:
    await api.create(CRD)

    async def crd_served() -> bool:
        try:
            await api.resource("example.com/v1", "Widget")
        except Exception:
            return False
        return True

    await eventually(crd_served)
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kept"}})
    for i in range(3):
        await api.create(pod(f"p{i}", "doomed"))
    await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "cm", "namespace": "doomed"}, "data": {"a": "b"}})
    await api.create({"apiVersion": "example.com/v1", "kind": "Widget",
                      "metadata": {"name": "w", "namespace": "doomed"}, "spec": {"size": 1}})
    # one object held by a finalizer keeps the namespace Terminating
    await api.create({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "held", "namespace": "doomed",
                                   "finalizers": ["example.com/hold"]}})
    await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "cm", "namespace": "kept"}})

    await api.delete("v1", "Namespace", "doomed")
    ns = await api.get("v1", "Namespace", "doomed")
    assert ns["status"]["phase"] == "Terminating"

    async def content_gone_but_held() -> bool:
        pods = (await api.list("v1", "Pod", namespace="doomed"))["items"]
        widgets = (await api.list("example.com/v1", "Widget", namespace="doomed"))["items"]
        cms = (await api.list("v1", "ConfigMap", namespace="doomed"))["items"]
        return not pods and not widgets and not cms

    await eventually(content_gone_but_held)

    async def reports_the_finalizer() -> bool:
        conds = {c["type"]: c for c in
                 (await api.get("v1", "Namespace", "doomed"))["status"].get("conditions", [])}
        remaining = conds.get("NamespaceContentRemaining", {})
        fins = conds.get("NamespaceFinalizersRemaining", {})
        return (remaining.get("status") == "True"
                and "secrets. has 1 resource instances" in remaining.get("message", "")
                and fins.get("reason") == "SomeFinalizerRemain"
                and "example.com/hold in 1 resource instances" in fins.get("message", ""))

    await eventually(reports_the_finalizer)
    ns = await api.get("v1", "Namespace", "doomed")
    assert ns["status"]["phase"] == "Terminating"
    assert "kubernetes" in ns["spec"]["finalizers"]

    held = await api.get("v1", "Secret", "held", namespace="doomed")
    await api.patch("v1", "Secret", "held", [
        {"op": "test", "path": "/metadata/uid", "value": held["metadata"]["uid"]},
        {"op": "remove", "path": "/metadata/finalizers"}], namespace="doomed", type="json")

    async def namespace_gone() -> bool:
        return await gone(api, "v1", "Namespace", "doomed")

    await eventually(namespace_gone)
    # the other namespace is untouched
    assert (await api.get("v1", "ConfigMap", "cm", namespace="kept"))["metadata"]["name"] == "cm"
    assert (await api.get("v1", "Namespace", "kept"))["status"]["phase"] == "Active"
