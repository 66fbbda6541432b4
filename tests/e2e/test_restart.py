"""Restarting ``kubevisor up`` on the same data dir (and the same etcd):
a clean SIGTERM exits 0; after a restart — clean or ``kill -9`` — objects,
CustomResourceDefinitions (served again at once, with their custom
resources), resourceVersions and the credentials are all as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import manifests
from tests.support.server import KubevisorServer, server_on_store

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-restart")]


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KubevisorServer]:
    with server_on_store(request.param, tmp_path) as server:
        yield server


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.restart.kubevisor.test"},
    "spec": {
        "group": "restart.kubevisor.test",
        "scope": "Namespaced",
        "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"n": {"type": "integer"}}},
            }}},
            "additionalPrinterColumns": [{"name": "N", "type": "integer", "jsonPath": ".spec.n"}],
        }],
    },
}  # fmt: skip


def populate(server: KubevisorServer) -> dict[str, str]:
    server.create_namespace("keep")
    server.create_configmap("cm", "keep", {"k": "v"})
    server.apply_yaml(manifests.deployment("dep", namespace="keep", replicas=3))
    server.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    server.kubectl("wait", "--for=condition=Established", "crd/things.restart.kubevisor.test")
    thing = {"apiVersion": "restart.kubevisor.test/v1", "kind": "Thing",
             "metadata": {"name": "t1", "namespace": "keep"}, "spec": {"n": 7}}  # fmt: skip
    server.kubectl("apply", "-f", "-", input=json.dumps(thing))
    return {
        "cm": server.kubectl_json("get", "cm", "cm", "-n", "keep")["metadata"]["resourceVersion"],
        "dep": server.kubectl_json("get", "deploy", "dep", "-n", "keep")["metadata"]["uid"],
    }


def check_everything_back(server: KubevisorServer, before: dict[str, str]) -> None:
    cm = server.kubectl_json("get", "cm", "cm", "-n", "keep")
    assert cm["data"] == {"k": "v"}
    assert cm["metadata"]["resourceVersion"] == before["cm"]
    dep = server.kubectl_json("get", "deploy", "dep", "-n", "keep")
    assert dep["metadata"]["uid"] == before["dep"] and dep["spec"]["replicas"] == 3
    out = server.kubectl("get", "things", "-n", "keep").stdout.split()
    assert out[:4] == ["NAME", "N", "t1", "7"], out
    assert "restart.kubevisor.test/v1" in server.kubectl("api-versions").stdout.split()
    # new writes get larger resourceVersions than anything before the restart
    server.create_configmap("after", "keep")
    after = server.kubectl_json("get", "cm", "after", "-n", "keep")["metadata"]["resourceVersion"]
    assert int(after) > int(before["cm"])


def test_clean_restart(own_server: KubevisorServer) -> None:
    server = own_server
    before = populate(server)
    token = server.token
    assert server.stop() == 0, server.log_tail()
    server.start()
    assert server.token == token, "the admin token changed across restarts"
    check_everything_back(server, before)


def test_restart_after_kill_9(own_server: KubevisorServer) -> None:
    server = own_server
    before = populate(server)
    server.kill()
    server.start()
    check_everything_back(server, before)
    # and once more, killed right after a burst of writes
    for i in range(20):
        server.create_configmap(f"burst-{i}", "keep")
    server.kill()
    server.start()
    listed = server.kubectl("get", "cm", "-n", "keep", "-o", "name").stdout.split()
    assert {f"configmap/burst-{i}" for i in range(20)} <= set(listed)
