"""``kubevisor up --store etcd://...`` against real etcd, where etcd itself
matters: a compacted revision makes watches and exact reads answer 410
Expired (kube-apiserver's "too old resource version"), the official
client's ``Watch`` surfaces it, and a three-member cluster keeps serving
kubectl when the member kubevisor talks to first goes down."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.e2e import manifests
from tests.support.etcd import EtcdCluster, running_etcd
from tests.support.server import KubevisorServer, running_server

pytestmark = [pytest.mark.slow, pytest.mark.etcd, pytest.mark.xdist_group("e2e-etcd")]


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with running_etcd(tmp_path_factory.mktemp("etcd1"), members=1) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def on_etcd1(
    etcd1: EtcdCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubevisorServer]:
    data = tmp_path_factory.mktemp("kv-etcd1") / "data"
    with running_server(data, store=etcd1.store_url) as server:
        server.create_namespace("compact")
        yield server


def etcd_compact(etcd: EtcdCluster) -> int:
    """Compact etcd at its current revision (through its JSON gateway)."""
    key = base64.b64encode(b"/").decode()
    header = httpx.post(f"{etcd[0]}/v3/kv/range", json={"key": key}).json()["header"]
    revision = int(header["revision"])
    response = httpx.post(
        f"{etcd[0]}/v3/kv/compaction", json={"revision": revision, "physical": True}
    )
    assert response.status_code == 200, response.text
    return revision


def test_watch_from_compacted_revision_is_expired(
    on_etcd1: KubevisorServer, etcd1: EtcdCluster
) -> None:
    server = on_etcd1
    server.create_configmap("old", "compact", {"v": "0"})
    old_rv = server.kubectl_json("get", "cm", "old", "-n", "compact")["metadata"]["resourceVersion"]
    for i in range(1, 6):
        server.kubectl(
            "patch",
            "cm",
            "old",
            "-n",
            "compact",
            "--type=merge",
            "-p",
            json.dumps({"data": {"v": str(i)}}),
        )
    compacted = etcd_compact(etcd1)
    assert compacted > int(old_rv)

    path = "/api/v1/namespaces/compact/configmaps"
    with server.client() as http:
        with http.stream(
            "GET", path, params={"watch": "true", "resourceVersion": old_rv}, timeout=10
        ) as response:
            if response.status_code == 200:
                first = json.loads(next(response.iter_lines()))
                assert first["type"] == "ERROR", first
                status = first["object"]
            else:
                assert response.status_code == 410
                response.read()
                status = response.json()
        assert status["kind"] == "Status" and status["code"] == 410, status
        assert status["reason"] == "Expired", status
        assert status["message"].startswith(f"too old resource version: {old_rv}"), status

        exact = http.get(path, params={"resourceVersion": old_rv, "resourceVersionMatch": "Exact"})
        assert exact.status_code == 410, exact.text
        assert exact.json()["reason"] == "Expired"

        # a fresh list and a watch from it still work
        listing = http.get(path)
        assert listing.status_code == 200
        assert [i["data"]["v"] for i in listing.json()["items"]] == ["5"]

    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    try:
        core = client.CoreV1Api(api_client)
        with pytest.raises(ApiException) as expired:
            for _event in watch.Watch().stream(
                core.list_namespaced_config_map,
                "compact",
                resource_version=old_rv,
                timeout_seconds=5,
            ):
                pass
        assert expired.value.status == 410
        current = core.list_namespaced_config_map("compact").metadata.resource_version
        server.create_configmap("new", "compact")
        names = []
        w = watch.Watch()
        for event in w.stream(
            core.list_namespaced_config_map, "compact", resource_version=current, timeout_seconds=10
        ):
            names.append((event["type"], event["object"].metadata.name))
            w.stop()
        assert names == [("ADDED", "new")]
    finally:
        api_client.close()


def test_three_member_cluster_survives_losing_a_member(tmp_path: Path) -> None:
    with running_etcd(tmp_path / "etcd3", members=3) as etcd:
        with running_server(tmp_path / "data", store=etcd.store_url) as server:
            server.create_namespace("ha")
            for i in range(5):
                server.create_configmap(f"before-{i}", "ha")
            watcher_rv = server.kubectl(
                "get", "cm", "-n", "ha", "-o", "jsonpath={.metadata.resourceVersion}"
            ).stdout
            etcd.stop_member(0, kill=True)  # the first endpoint of --store
            deadline = time.monotonic() + 30
            created = 0
            while created < 5:
                manifest = manifests.configmap(f"after-{created}", namespace="ha")
                result = server.kubectl("create", "-f", "-", input=manifest, check=False)
                if result.returncode == 0:
                    created += 1
                    continue
                assert time.monotonic() < deadline, result.stderr
                time.sleep(0.5)
            names = server.kubectl("get", "cm", "-n", "ha", "-o", "name").stdout.split()
            assert sorted(names) == sorted(
                [f"configmap/before-{i}" for i in range(5)]
                + [f"configmap/after-{i}" for i in range(5)]
            )
            with server.client() as http:
                with http.stream(
                    "GET",
                    "/api/v1/namespaces/ha/configmaps",
                    params={"watch": "true", "resourceVersion": watcher_rv, "timeoutSeconds": "5"},
                ) as response:
                    assert response.status_code == 200
                    seen = []
                    for line in response.iter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        seen.append((event["type"], event["object"]["metadata"]["name"]))
                        if len(seen) == 5:
                            break
            assert seen == [("ADDED", f"after-{i}") for i in range(5)]
            assert server.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
