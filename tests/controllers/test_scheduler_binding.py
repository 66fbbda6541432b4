"""The ``pods/binding`` subresource on the real in-process apiserver: bind,
409 when bound, 400 for a name mismatch, 404 for a missing pod, dryRun,
exactly one winner among concurrent bindings, the legacy ``bindings``
collection and the Python client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from kubevisor.client import (
    BadRequestError,
    Client,
    ConflictError,
    InvalidError,
    NotFoundError,
)

NS = "bind"


@pytest.fixture(autouse=True)
async def namespace(api: Client) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})


def pod(name: str) -> dict:
    # Another scheduler's pod: the running scheduler leaves it alone.
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"schedulerName": "by-hand",
                     "containers": [{"name": "c", "image": "busybox"}]}}


def binding(name: str, node: str, **meta: object) -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, **meta},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


async def bind(api: Client, name: str, body: dict, **params: str) -> dict:
    return await api.request("POST", f"/api/v1/namespaces/{NS}/pods/{name}/binding",
                             body=body, params=params)


async def test_binding_sets_node_and_condition(api: Client) -> None:
    await api.create(pod("a"))
    answer = await bind(api, "a", binding("a", "n1", annotations={"x": "y"}))
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    got = await api.get("v1", "Pod", "a", namespace=NS)
    assert got["spec"]["nodeName"] == "n1"
    assert got["metadata"]["annotations"] == {"x": "y"}
    cond = [c for c in got["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond and cond[0]["status"] == "True"
    with pytest.raises(ConflictError) as exc:
        await bind(api, "a", binding("a", "n2"))
    assert exc.value.code == 409
    assert str(exc.value.message) == (
        'Operation cannot be fulfilled on pods/binding "a": pod a is already assigned '
        'to node "n1"')
    again = await api.get("v1", "Pod", "a", namespace=NS)
    assert again["spec"]["nodeName"] == "n1"


async def test_binding_errors(api: Client) -> None:
    await api.create(pod("b"))
    with pytest.raises(BadRequestError) as bad:
        await bind(api, "b", binding("other", "n1"))
    assert bad.value.message == "name in URL does not match name in Binding object"
    with pytest.raises(NotFoundError) as missing:
        await bind(api, "nope", binding("nope", "n1"))
    assert missing.value.message == 'pods "nope" not found'
    with pytest.raises(InvalidError):
        await bind(api, "b", {"apiVersion": "v1", "kind": "Binding",
                              "metadata": {"name": "b"}, "target": {}})
    with pytest.raises(ConflictError):
        await bind(api, "b", binding("b", "n1", uid="not-the-uid"))
    answer = await bind(api, "b", binding("b", "n1"), dryRun="All")
    assert answer["status"] == "Success"
    got = await api.get("v1", "Pod", "b", namespace=NS)
    assert not got["spec"].get("nodeName")


async def test_concurrent_bindings_have_one_winner(api: Client) -> None:
    await api.create(pod("c"))
    results = await asyncio.gather(*(bind(api, "c", binding("c", f"n{i}")) for i in range(8)),
                                   return_exceptions=True)
    winners = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, dict))
    got = await api.get("v1", "Pod", "c", namespace=NS)
    assert got["spec"]["nodeName"] == f"n{winners[0]}"


async def test_legacy_bindings_collection_and_python_client(api: Client, tmp_path: Path) -> None:
    await api.create(pod("d"))
    await api.create(pod("e"))
    answer = await api.request("POST", f"/api/v1/namespaces/{NS}/bindings",
                               body=binding("d", "n1"))
    assert answer["status"] == "Success"
    assert (await api.get("v1", "Pod", "d", namespace=NS))["spec"]["nodeName"] == "n1"

    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    def python_client() -> tuple[int, dict]:
        api_client = k8s_config.new_client_from_config(str(tmp_path / "kubeconfig"))
        try:
            core = k8s.CoreV1Api(api_client)
            body = k8s.V1Binding(metadata=k8s.V1ObjectMeta(name="e"),
                                 target=k8s.V1ObjectReference(kind="Node", name="n2"))
            # The generated client cannot read the Status answer back as a
            # V1Binding (target is required there), hence the raw response.
            resp = core.create_namespaced_binding(NS, body, _preload_content=False)
            return resp.status, orjson.loads(resp.data)
        finally:
            api_client.close()

    status, body = await asyncio.to_thread(python_client)
    assert status == 201 and body["status"] == "Success"
    assert (await api.get("v1", "Pod", "e", namespace=NS))["spec"]["nodeName"] == "n2"


async def test_kubectl_create_raw(api: Client, tmp_path: Path) -> None:
    await api.create(pod("f"))
    manifest = tmp_path / "binding.json"
    manifest.write_bytes(orjson.dumps(binding("f", "n3")))
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/kubectl", "create", "--raw", f"/api/v1/namespaces/{NS}/pods/f/binding",
        "-f", str(manifest), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "KUBECONFIG": str(tmp_path / "kubeconfig")})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert orjson.loads(out)["status"] == "Success"
    assert (await api.get("v1", "Pod", "f", namespace=NS))["spec"]["nodeName"] == "n3"
