"""Acceptance of issue 3, workloads: a Deployment of httpd on the real node
of ``kubevisor up``, driven with the real kubectl.

``kubectl create deployment web --replicas=3`` and ``kubectl expose``:
Running and Ready; requests from another pod to the Service IP reach all
three replicas (and ``http://web`` through the cluster DNS); ``kubectl
logs``, ``exec`` and ``port-forward``; scale to 5 and back to 2; a rolling
update to ``httpd:2`` while a client pod keeps requesting the Service,
with no failed request; a container whose main process is killed is
restarted (restartCount 1); a pod asking for more memory than the node has
stays Pending with FailedScheduling. One server (tests/support/nodeserver.py)
for the module; the tests share the Deployment and run in file order, but
each also holds when run alone (pytest-xdist may split a module).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.nodeserver import (
    NodeImages,
    NodeServer,
    client_pod,
    fetch,
    is_ready,
    node_images,  # noqa: F401  (session fixture)
    pods,
    running_node_server,
    served_by,
    wait_until,
)
from tests.support.server import KUBECTL

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-node-workloads"),  # one server, in order
              pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")]


@dataclass(frozen=True)
class Web:
    server: NodeServer
    ns: str
    cluster_ip: str
    client: str
    images: NodeImages

    def ready_pods(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in pods(self.server, self.ns, "app=web")
                      if is_ready(p))

    def wait_ready_pods(self, count: int, timeout: float = 60) -> list[str]:
        """Exactly ``count`` Ready pods (not terminating); their names."""
        return wait_until(lambda: (names := self.ready_pods()) and len(names) == count and names,
                          timeout=timeout, what=f"{count} Ready web pods")

    def wait_endpoints(self, count: int, timeout: float = 30) -> list[str]:
        return wait_until(lambda: (ips := self.endpoints()) and len(ips) == count and ips,
                          timeout=timeout, what=f"{count} endpoints of web")

    def endpoints(self) -> list[str]:
        ep = self.server.kubectl_json("get", "endpoints", "web", "-n", self.ns)
        return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])

    def rollout(self, timeout: int = 120) -> None:
        self.server.kubectl("rollout", "status", "deployment/web", "-n", self.ns,
                            f"--timeout={timeout}s", timeout=timeout + 10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeServer]:
    with running_node_server(tmp_path_factory.mktemp("node-workloads")) as server:
        yield server


@pytest.fixture(scope="module")
def web(cluster: NodeServer, node_images: NodeImages) -> Web:  # noqa: F811
    ns = "web"
    cluster.create_namespace(ns)
    cluster.kubectl("create", "deployment", "web", f"--image={node_images.httpd_v1}",
                    "--replicas=3", "-n", ns)
    cluster.kubectl("expose", "deployment", "web", "--port", "80", "-n", ns)
    svc = cluster.kubectl_json("get", "service", "web", "-n", ns)
    client = client_pod(cluster, ns, node_images.busybox)
    result = Web(cluster, ns, svc["spec"]["clusterIP"], client, node_images)
    result.rollout()
    return result


def test_replicas_running_ready_and_the_service_reaches_all(web: Web) -> None:
    names = web.wait_ready_pods(3)
    web.wait_endpoints(3)
    loop = (f"for i in $(seq 60); do timeout 5 wget -qO- http://{web.cluster_ip}/ "
            "|| echo FAILED; echo; done")
    out = web.server.kubectl("exec", "-n", web.ns, web.client, "--", "sh", "-c", loop,
                             timeout=120).stdout
    pages = [line for line in out.splitlines() if line.strip()]
    assert "FAILED" not in pages and len(pages) == 60, out
    assert {served_by(page)[0] for page in pages} == set(names)
    # and by name, through the cluster DNS on the bridge's gateway
    assert served_by(fetch(web.server, web.ns, web.client, "http://web/"))[0] in names
    assert served_by(fetch(web.server, web.ns, web.client,
                           f"http://web.{web.ns}.svc.cluster.local/"))[0] in names


def test_logs_exec_and_port_forward(web: Web) -> None:
    pod = web.ready_pods()[0]
    logs = web.server.kubectl("logs", "-n", web.ns, pod).stdout
    assert f"httpd-start: serving /www as {pod} on port 80" in logs
    assert web.server.kubectl("exec", "-n", web.ns, pod, "--", "cat",
                              "/etc/hostname").stdout.strip() == pod
    forward = subprocess.Popen([KUBECTL, "port-forward", "-n", web.ns, f"pod/{pod}", ":80"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=web.server.kubectl_env())
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> 80
        match = re.search(r"127\.0\.0\.1:(\d+) -> 80", line)
        assert match, f"{line!r} {forward.stderr.read() if forward.poll() is not None else ''}"
        page = httpx.get(f"http://127.0.0.1:{match.group(1)}/", timeout=10).text
        assert served_by(page) == (pod, "1")
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    logs = web.server.kubectl("logs", "-n", web.ns, pod).stdout
    assert "[::ffff:127.0.0.1]" in logs  # the forwarded request, as httpd saw it


def test_scale_to_5_and_back_to_2(web: Web) -> None:
    web.server.kubectl("scale", "deployment/web", "--replicas=5", "-n", web.ns)
    web.rollout()
    web.wait_ready_pods(5)
    web.wait_endpoints(5)
    web.server.kubectl("scale", "deployment/web", "--replicas=2", "-n", web.ns)
    web.rollout()
    remaining = web.wait_ready_pods(2)
    ips = web.wait_endpoints(2)
    by_name = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods(web.server, web.ns, "app=web")}
    assert sorted(by_name[n] for n in remaining) == ips
    deploy = web.server.kubectl_json("get", "deployment", "web", "-n", web.ns)
    assert deploy["status"].get("readyReplicas") == 2 and deploy["spec"]["replicas"] == 2


def test_rolling_update_while_a_client_requests_the_service(web: Web) -> None:
    """No request fails while every pod is replaced by one of the new image."""
    before = set(web.ready_pods())
    assert before
    loop = ("rm -f /tmp/stop /tmp/results; "
            "(while [ ! -f /tmp/stop ]; do "
            f"if page=$(timeout 5 wget -qO- http://{web.cluster_ip}/ 2>&1); "
            'then echo "OK $page"; else echo "FAILED $? $page"; fi >> /tmp/results; '
            "done) >/dev/null 2>&1 &")
    web.server.kubectl("exec", "-n", web.ns, web.client, "--", "sh", "-c", loop)
    wait_until(lambda: web.server.kubectl("exec", "-n", web.ns, web.client, "--", "cat",
                                          "/tmp/results", check=False).stdout.count("OK") >= 20,
               timeout=30, what="the client's first answers")
    started = time.monotonic()
    web.server.kubectl("set", "image", "deployment/web", f"httpd={web.images.httpd_v2}",
                       "-n", web.ns)
    web.rollout()
    rollout_s = time.monotonic() - started
    time.sleep(2)
    web.server.kubectl("exec", "-n", web.ns, web.client, "--", "touch", "/tmp/stop")
    time.sleep(1)
    lines = web.server.kubectl("exec", "-n", web.ns, web.client, "--", "cat",
                               "/tmp/results").stdout.splitlines()
    failed = [line for line in lines if not line.startswith("OK ")]
    versions = [served_by(line)[1] for line in lines if line.startswith("OK ")]
    assert not failed, f"{len(failed)} of {len(lines)} requests failed: {failed[:10]}"
    assert "1" in versions and "2" in versions, versions[-5:]
    assert versions[-20:] == ["2"] * 20, f"old pods still answer after the rollout: {versions[-20:]}"
    replicas = web.server.kubectl_json("get", "deployment", "web", "-n", web.ns)["spec"]["replicas"]
    after = web.wait_ready_pods(replicas)
    assert not before & set(after)
    images = {c["image"] for p in pods(web.server, web.ns, "app=web") if is_ready(p)
              for c in p["spec"]["containers"]}
    assert images == {web.images.httpd_v2}
    print(f"rolling update: {len(lines)} requests, none failed, rollout {rollout_s:.1f}s")


def test_killed_main_process_is_restarted(web: Web) -> None:
    pod = web.ready_pods()[0]
    pid = web.server.container_pid(pod, "httpd")
    os.kill(pid, signal.SIGKILL)  # `kubectl exec -- kill 1` cannot: pid 1 has no handler

    def restarted() -> dict[str, object] | None:
        status = next(p for p in pods(web.server, web.ns, "app=web")
                      if p["metadata"]["name"] == pod)
        cs = status["status"]["containerStatuses"][0]
        return cs if cs["restartCount"] == 1 and cs.get("ready") and "running" in cs["state"] \
            else None

    cs = wait_until(restarted, timeout=60, what=f"{pod} restarted once and Ready")
    assert cs["lastState"]["terminated"]["exitCode"] == 137, cs
    assert web.server.container_pid(pod, "httpd") != pid
    page = fetch(web.server, web.ns, web.client, f"http://{pod_ip(web, pod)}/")
    assert served_by(page)[0] == pod
    time.sleep(3)  # and only once
    assert restarted() is not None


def pod_ip(web: Web, name: str) -> str:
    return str(web.server.kubectl_json("get", "pod", name, "-n", web.ns)["status"]["podIP"])


def test_pod_requesting_more_memory_than_the_node_is_pending(cluster: NodeServer,
                                                              node_images: NodeImages) -> None:  # noqa: F811
    ns = "big"
    cluster.create_namespace(ns)
    manifest = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n"
                f"spec:\n  containers:\n  - name: big\n    image: {node_images.busybox}\n"
                "    command: [sleep, '3600']\n    resources:\n      requests:\n"
                "        memory: 64Ti\n")
    cluster.kubectl("create", "-n", ns, "-f", "-", input=manifest)
    message = "0/1 nodes are available: 1 Insufficient memory."

    def scheduled_condition() -> dict[str, str] | None:
        pod = cluster.kubectl_json("get", "pod", "big", "-n", ns)
        return next((c for c in pod["status"].get("conditions") or []
                     if c["type"] == "PodScheduled" and c["status"] == "False"), None)

    condition = wait_until(scheduled_condition, timeout=30, what="PodScheduled False")
    assert condition["reason"] == "Unschedulable" and message in condition["message"]
    pod = cluster.kubectl_json("get", "pod", "big", "-n", ns)
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    describe = wait_until(lambda: "FailedScheduling" in (d := cluster.kubectl(
        "describe", "pod", "big", "-n", ns).stdout) and d, timeout=30, what="a FailedScheduling event")
    assert message in describe, describe
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=big,reason=FailedScheduling").stdout
    assert message in events, events
