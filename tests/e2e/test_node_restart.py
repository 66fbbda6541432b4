"""Acceptance of issue 3, agent restart: the node agent of ``kubevisor up``
killed with SIGKILL and started again by hand with the argv it ran with
(read from /proc before the kill; the server restarts nothing by itself)
leaves the pods running: the same containers (host pids, container ids,
start times) and restartCount, still Ready and serving; the new agent
takes over (the Node stays Ready, a scale-up runs a new pod, kubectl exec
goes through its stream server); the same after a SIGTERM. One server
with its node (tests/support/nodeserver.py) for the module.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.nodeserver import (
    NodeImages,
    NodeServer,
    is_ready,
    node_images,  # noqa: F401  (session fixture)
    pods,
    running_node_server,
    served_by,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-node-restart"),  # one server, in order
              pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")]
NS = "restart"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeServer]:
    with running_node_server(tmp_path_factory.mktemp("node-restart")) as server:
        yield server


@pytest.fixture(scope="module")
def web(cluster: NodeServer, node_images: NodeImages) -> None:  # noqa: F811
    """Deployment web, 2 replicas of httpd, rolled out."""
    cluster.create_namespace(NS)
    cluster.kubectl("create", "deployment", "web", f"--image={node_images.httpd_v1}",
                    "--replicas=2", "-n", NS)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", NS, "--timeout=120s",
                    timeout=130)


def snapshot(cluster: NodeServer) -> dict[str, dict[str, Any]]:
    """Per Ready web pod: restartCount, container id, start time, host pid, pod IP."""
    out = {}
    for pod in pods(cluster, NS, "app=web"):
        if not is_ready(pod):
            continue
        name = pod["metadata"]["name"]
        cs = pod["status"]["containerStatuses"][0]
        out[name] = {"restartCount": cs["restartCount"], "containerID": cs["containerID"],
                     "startedAt": cs["state"]["running"]["startedAt"],
                     "pid": cluster.container_pid(name, "httpd"), "ip": pod["status"]["podIP"]}
    return out


def ready_snapshot(cluster: NodeServer) -> dict[str, dict[str, Any]]:
    """The snapshot once every replica of web is Ready."""
    replicas = cluster.kubectl_json("get", "deployment", "web", "-n", NS)["spec"]["replicas"]
    return wait_until(lambda: len(s := snapshot(cluster)) == replicas and s, timeout=60,
                      what=f"{replicas} Ready pods")


def test_agent_killed_and_started_again_leaves_the_pods_running(
        cluster: NodeServer, web: None) -> None:
    cluster.kubectl("scale", "deployment/web", "--replicas=2", "-n", NS)
    before = ready_snapshot(cluster)
    old_agent = cluster.agent_pid()
    assert old_agent is not None and cluster.proc is not None
    stat = Path(f"/proc/{old_agent}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[1]) == cluster.proc.pid, "not the server's child"

    argv = cluster.kill_agent()
    assert "kubevisor.cli.nodeagent" in argv
    assert cluster.agent_pid() is None
    killed_at = time.time()
    # the containers do not depend on the agent: alive and serving meanwhile
    for name, pod in before.items():
        os.kill(pod["pid"], 0)
        assert served_by(httpx.get(f"http://{pod['ip']}/", timeout=5).text)[0] == name
    time.sleep(2)

    new_agent = cluster.start_agent(argv)
    assert new_agent != old_agent
    wait_until(lambda: cluster.agent_pid() == new_agent, timeout=10, what="the new agent")
    cluster.wait_node_ready()
    wait_until(lambda: _lease_renewed_after(cluster, killed_at), timeout=60,
               what="the new agent to renew the node lease")
    # a scale-up is run by the new agent; meanwhile it has re-read the old pods
    cluster.kubectl("scale", "deployment/web", "--replicas=3", "-n", NS)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", NS, "--timeout=120s",
                    timeout=130)
    after = ready_snapshot(cluster)
    assert len(after) == 3
    assert cluster.hand_agent is not None and cluster.hand_agent.poll() is None, \
        f"the restarted agent exited:\n{cluster.log_tail()}"
    for name, pod in before.items():
        assert name in after, f"{name} is gone after the agent restart: {sorted(after)}"
        assert after[name] == pod, f"{name} changed across the agent restart"
    time.sleep(3)  # nothing restarts a little later either
    assert {n: p for n, p in snapshot(cluster).items() if n in before} == before
    exec_out = cluster.kubectl("exec", "-n", NS, next(iter(before)), "--", "cat", "/etc/hostname")
    assert exec_out.stdout.strip() == next(iter(before))
    assert Path(f"/proc/{new_agent}").exists()


def test_agent_stopped_with_sigterm_leaves_the_containers_and_comes_back(
        cluster: NodeServer, web: None) -> None:
    """The agent's orderly stop (SIGTERM, as ``kubevisor up`` stops it) leaves
    the containers running too (one conmon each), and the agent started
    again adopts them unchanged."""
    before = ready_snapshot(cluster)
    pid = cluster.agent_pid()
    assert pid is not None
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    os.kill(pid, signal.SIGTERM)
    if cluster.hand_agent is not None and cluster.hand_agent.pid == pid:
        assert cluster.hand_agent.wait(timeout=20) == 0
    wait_until(lambda: cluster.agent_pid() is None, timeout=20, what="the agent to stop")
    for pod in before.values():
        os.kill(pod["pid"], 0)
    assert len(cluster.runtime_processes()["conmon"]) == len(before)
    killed_at = time.time()
    cluster.start_agent(argv)
    wait_until(lambda: _lease_renewed_after(cluster, killed_at), timeout=60,
               what="the new agent to renew the node lease")
    time.sleep(3)
    assert snapshot(cluster) == before
    assert len(cluster.runtime_processes()["conmon"]) == len(before)


def _lease_renewed_after(cluster: NodeServer, when: float) -> bool:
    from datetime import datetime

    lease = cluster.kubectl_json("get", "lease", cluster.node_name, "-n", "kube-node-lease")
    renew = lease.get("spec", {}).get("renewTime")
    return bool(renew) and datetime.fromisoformat(renew.replace("Z", "+00:00")).timestamp() > when
