"""kubectl under a little load: concurrent writers on one object (patches
never lose an update; client- and server-side apply from many managers
converge), a 1 MiB object, and a thousand objects listed in chunks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.e2e import manifests
from tests.support.server import KubevisorServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-kubectl-load")]


def test_concurrent_labels_and_server_side_applies_all_land(
    server: KubevisorServer, ns: str
) -> None:
    server.create_configmap("shared", ns, {"base": "1"})

    def label(i: int) -> str:
        return server.kubectl("label", "cm", "shared", "-n", ns, f"l{i}=v{i}").stdout

    def apply(i: int) -> str:
        body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "shared", "namespace": ns},
                           "data": {f"m{i}": str(i)}})  # fmt: skip
        return server.kubectl("apply", "--server-side", f"--field-manager=m{i}", "-f", "-",
                              input=body).stdout  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as pool:
        labelled = list(pool.map(label, range(12)))
        applied = list(pool.map(apply, range(12)))
    assert all(out.strip() == "configmap/shared labeled" for out in labelled), labelled
    assert all(out.strip() == "configmap/shared serverside-applied" for out in applied), applied
    obj = server.kubectl_json("get", "cm", "shared", "-n", ns, "--show-managed-fields")
    assert obj["metadata"]["labels"] == {f"l{i}": f"v{i}" for i in range(12)}
    assert obj["data"] == {"base": "1", **{f"m{i}": str(i) for i in range(12)}}
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert {f"m{i}" for i in range(12)} <= managers


def test_concurrent_updates_with_conflicts_lose_nothing(server: KubevisorServer, ns: str) -> None:
    """Read-modify-write loops with resourceVersion preconditions: every
    increment lands exactly once (409s are retried, never swallowed)."""
    server.create_configmap("counter", ns, {"n": "0"})
    path = f"/api/v1/namespaces/{ns}/configmaps/counter"
    conflicts = 0

    def increment(_: int) -> None:
        nonlocal conflicts
        with server.client() as http:
            while True:
                current = http.get(path).json()
                current["data"]["n"] = str(int(current["data"]["n"]) + 1)
                response = http.put(path, json=current)
                if response.status_code == 200:
                    return
                assert response.status_code == 409, response.text
                assert response.json()["reason"] == "Conflict"
                conflicts += 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(increment, range(40)))
    assert server.kubectl_json("get", "cm", "counter", "-n", ns)["data"]["n"] == "40"
    assert conflicts > 0, "8 concurrent writers never conflicted: preconditions not checked?"


def test_one_mebibyte_object(server: KubevisorServer, ns: str) -> None:
    big = "x" * (1024 * 1024 - 512)
    out = server.kubectl(
        "create", "-f", "-", input=manifests.configmap("big", namespace=ns, data={"blob": big})
    ).stdout
    assert out.strip() == "configmap/big created"
    got = server.kubectl_json("get", "cm", "big", "-n", ns)
    assert got["data"]["blob"] == big
    server.kubectl("label", "cm", "big", "-n", ns, "size=large")
    assert server.kubectl_json("get", "cm", "big", "-n", ns)["metadata"]["labels"] == {
        "size": "large"
    }


def test_a_thousand_objects_in_chunks(server: KubevisorServer, ns: str) -> None:
    with httpx.Client(base_url=server.url, verify=server.ssl_context(),
                      headers={"Authorization": f"Bearer {server.token}"}) as http:  # fmt: skip
        for i in range(1000):
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"n-{i:04d}", "labels": {"mod": str(i % 7)}},
                    "data": {"i": str(i)}}  # fmt: skip
            response = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=body)
            assert response.status_code == 201, response.text
    listed = server.kubectl("get", "cm", "-n", ns, "-o", "name", "--chunk-size=170").stdout.split()
    assert listed == [f"configmap/n-{i:04d}" for i in range(1000)]
    table = server.kubectl("get", "cm", "-n", ns, "--no-headers").stdout.splitlines()
    assert len(table) == 1000
    selected = server.kubectl("get", "cm", "-n", ns, "-l", "mod=3", "-o", "name").stdout.split()
    assert selected == [f"configmap/n-{i:04d}" for i in range(1000) if i % 7 == 3]
    # --wait=false: kubectl's own client-side rate limit makes waiting for
    # hundreds of deletions slow against any server
    out = server.kubectl("delete", "cm", "-n", ns, "-l", "mod in (0,1,2,3,4,5)", "--wait=false")
    assert len(out.stdout.splitlines()) == sum(1 for i in range(1000) if i % 7 != 6)
    left = server.kubectl("get", "cm", "-n", ns, "-o", "name").stdout.split()
    assert left == [f"configmap/n-{i:04d}" for i in range(1000) if i % 7 == 6]
