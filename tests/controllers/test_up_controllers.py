"""`kubevisor up` runs the controllers: namespace deletion and garbage
collection work through the real command and the real kubectl."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.client.live import require_apiserver
from tests.support.server import running_server


@pytest.mark.slow
def test_kubevisor_up_deletes_namespaces_and_collects_garbage(tmp_path: Path) -> None:
    require_apiserver()
    with running_server(tmp_path / "data") as server:
        server.kubectl("create", "namespace", "doomed")
        server.kubectl("-n", "doomed", "create", "configmap", "owner", "--from-literal=a=b")
        owner = json.loads(server.kubectl("-n", "doomed", "get", "configmap", "owner",
                                          "-o", "json").stdout)
        server.apply_yaml(json.dumps({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "dependent", "namespace": "doomed", "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": owner["metadata"]["uid"]}]}}))
        server.kubectl("-n", "doomed", "delete", "configmap", "owner")
        deadline = time.monotonic() + 30
        while server.kubectl("-n", "doomed", "get", "configmap", "dependent",
                             check=False).returncode == 0:
            assert time.monotonic() < deadline, "dependent not collected"
            time.sleep(0.2)
        server.kubectl("-n", "doomed", "create", "configmap", "content")
        # kubectl waits until the namespace is gone
        server.kubectl("delete", "namespace", "doomed", "--timeout=60s", timeout=90)
        gone = server.kubectl("get", "namespace", "doomed", check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
