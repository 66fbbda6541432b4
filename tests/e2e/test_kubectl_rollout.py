"""Deployments the way users drive them, with the real kubectl against
``kubevisor up``: ``create deployment``, ``scale``, ``set image``,
``rollout status`` (a background thread plays the kubelet and marks pods
Running and Ready through the API), ``rollout history``, ``rollout undo``,
``rollout pause``/``resume``."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kubevisor.controllers.podtemplate import SAFE_ALPHABET
from tests.e2e.output import table
from tests.support.server import KubevisorServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-kubectl-rollout")]


@contextlib.contextmanager
def kubelet(server: KubevisorServer, ns: str) -> Iterator[None]:
    """Marks every pod of ``ns`` Running and Ready until the block ends."""
    stop = threading.Event()

    def loop() -> None:
        with server.client() as http:
            while not stop.is_set():
                listed = http.get(f"/api/v1/namespaces/{ns}/pods")
                for pod in listed.json().get("items") or [] if listed.is_success else []:
                    conds = (pod.get("status") or {}).get("conditions") or []
                    if pod["metadata"].get("deletionTimestamp") or any(
                            c.get("type") == "Ready" and c.get("status") == "True"
                            for c in conds):
                        continue
                    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    http.patch(
                        f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/status",
                        json={"status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}},
                        headers={"Content-Type": "application/merge-patch+json"})
                stop.wait(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def rollout_status(server: KubevisorServer, ns: str, name: str = "web") -> str:
    out = server.kubectl("rollout", "status", f"deployment/{name}", "-n", ns,
                         "--timeout=90s", timeout=120).stdout
    assert out.splitlines()[-1] == f'deployment "{name}" successfully rolled out', out
    return out


def replicasets(server: KubevisorServer, ns: str) -> dict[str, dict]:
    items = server.kubectl_json("get", "rs", "-n", ns)["items"]
    return {rs["metadata"]["name"]: rs for rs in items}


def images(server: KubevisorServer, ns: str) -> list[str]:
    pods = server.kubectl_json("get", "pods", "-n", ns, "-l", "app=web")["items"]
    return sorted(p["spec"]["containers"][0]["image"] for p in pods
                  if not p["metadata"].get("deletionTimestamp"))


def test_create_scale_update_history_undo(server: KubevisorServer, ns: str) -> None:
    with kubelet(server, ns):
        out = server.kubectl("create", "deployment", "web", "--image=busybox:1",
                             "--replicas=3", "-n", ns).stdout
        assert out.strip() == "deployment.apps/web created"
        rollout_status(server, ns)
        [(rs_name, rs)] = replicasets(server, ns).items()
        hash_ = rs["metadata"]["labels"]["pod-template-hash"]
        assert rs_name == f"web-{hash_}" and set(hash_) <= set(SAFE_ALPHABET)
        rows = table(server.kubectl("get", "deploy", "web", "-n", ns).stdout)
        assert rows[0]["READY"] == "3/3" and rows[0]["UP-TO-DATE"] == "3"
        assert rows[0]["AVAILABLE"] == "3"

        server.kubectl("scale", "deployment", "web", "--replicas=5", "-n", ns)
        rollout_status(server, ns)
        assert images(server, ns) == ["busybox:1"] * 5

        server.kubectl("set", "image", "deployment/web", "busybox=busybox:2", "-n", ns)
        rollout_status(server, ns)
        assert images(server, ns) == ["busybox:2"] * 5
        rss = replicasets(server, ns)
        assert len(rss) == 2 and rss[rs_name]["spec"]["replicas"] == 0

        # the change-cause annotation is copied onto the current ReplicaSet
        server.kubectl("annotate", "deployment/web", "-n", ns,
                       "kubernetes.io/change-cause=image busybox:2")
        deadline = time.monotonic() + 30
        while True:
            history = server.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
            rows = table(history.split("\n", 1)[1])
            if rows[-1]["CHANGE-CAUSE"] == "image busybox:2" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [(row["REVISION"], row["CHANGE-CAUSE"]) for row in rows] == [
            ("1", "<none>"), ("2", "image busybox:2")]

        out = server.kubectl("rollout", "undo", "deployment/web", "-n", ns).stdout
        assert out.strip() == "deployment.apps/web rolled back"
        rollout_status(server, ns)
        assert images(server, ns) == ["busybox:1"] * 5
        rss = replicasets(server, ns)
        assert len(rss) == 2, "undo reuses the first ReplicaSet"
        back = rss[rs_name]
        assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert back["spec"]["replicas"] == 5
        history = server.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
        assert [row["REVISION"] for row in table(history.split("\n", 1)[1])] == ["2", "3"]
        detail = server.kubectl("rollout", "history", "deployment/web", "-n", ns,
                                "--revision=3").stdout
        assert "busybox:1" in detail


def test_pause_resume_and_waiting_messages(server: KubevisorServer, ns: str) -> None:
    server.kubectl("create", "deployment", "web", "--image=busybox:1", "--replicas=2", "-n", ns)
    # nobody marks pods ready yet: rollout status waits, then gives up
    result = server.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=2s",
                            check=False)
    assert result.returncode != 0
    assert 'Waiting for deployment "web" rollout to finish: 0 of 2 updated replicas are ' \
        "available..." in result.stdout
    with kubelet(server, ns):
        rollout_status(server, ns)
        out = server.kubectl("rollout", "pause", "deployment/web", "-n", ns).stdout
        assert out.strip() == "deployment.apps/web paused"
        server.kubectl("set", "image", "deployment/web", "busybox=busybox:2", "-n", ns)
        assert len(replicasets(server, ns)) == 1
        out = server.kubectl("rollout", "resume", "deployment/web", "-n", ns).stdout
        assert out.strip() == "deployment.apps/web resumed"
        rollout_status(server, ns)
        assert images(server, ns) == ["busybox:2"] * 2
        assert len(replicasets(server, ns)) == 2
