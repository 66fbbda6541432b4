"""Acceptance of issue 3, Services from outside the pods: a NodePort Service
answers on 127.0.0.1:nodePort, and a LoadBalancer Service gets an address
from the pool given to ``kubevisor up`` (``KUBEVISOR_LOADBALANCER_POOL``, a
free /29 of this test) that a TCP request from the host reaches a pod on.
Rolling updates of pods that exit at once on SIGTERM lose no request of a
client requesting the Service meanwhile.
One server with its node (tests/support/nodeserver.py) for the module.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.nodeserver import (
    NodeImages,
    NodeServer,
    client_pod,
    free_lb_pool,
    is_ready,
    node_images,  # noqa: F401  (session fixture)
    pods,
    running_node_server,
    served_by,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-node-services"),  # one server, in order
              pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")]
NS = "svc"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeServer]:
    with running_node_server(tmp_path_factory.mktemp("node-services"),
                             lb_pool=free_lb_pool()) as server:
        server.create_namespace(NS)
        yield server


@pytest.fixture(scope="module")
def web(cluster: NodeServer, node_images: NodeImages) -> list[str]:  # noqa: F811
    """The names of the two Ready pods of Deployment web."""
    cluster.kubectl("create", "deployment", "web", f"--image={node_images.httpd_v1}",
                    "--replicas=2", "-n", NS)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", NS, "--timeout=120s",
                    timeout=130)
    return wait_until(lambda: len(names := [p["metadata"]["name"] for p in pods(cluster, NS, "app=web")
                                            if is_ready(p)]) == 2 and sorted(names),
                      timeout=60, what="2 Ready pods")


def endpoints_ready(cluster: NodeServer, name: str, count: int) -> bool:
    ep = cluster.kubectl_json("get", "endpoints", name, "-n", NS)
    return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or []) == count


def get_pages(url: str, count: int) -> list[str]:
    """``count`` GETs of ``url`` from the host, each on a new connection."""
    pages = []
    for _ in range(count):
        with httpx.Client(timeout=5) as http:
            response = http.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.text)
    return pages


def test_nodeport_answers_on_loopback(cluster: NodeServer, web: list[str]) -> None:
    cluster.kubectl("expose", "deployment", "web", "--name", "web-np", "--type", "NodePort",
                    "--port", "80", "-n", NS)
    svc = cluster.kubectl_json("get", "service", "web-np", "-n", NS)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    wait_until(lambda: endpoints_ready(cluster, "web-np", 2), timeout=30, what="2 endpoints")
    url = f"http://127.0.0.1:{node_port}/"
    first = wait_until(lambda: _try_get(url), timeout=15, what=f"{url} to answer")
    pages = [first, *get_pages(url, 30)]
    assert {served_by(page)[0] for page in pages} == set(web)


def test_loadbalancer_gets_a_pool_address_that_reaches_a_pod(cluster: NodeServer,
                                                             web: list[str]) -> None:
    pool = ipaddress.ip_network(cluster.lb_pool or "")
    cluster.kubectl("expose", "deployment", "web", "--name", "web-lb", "--type", "LoadBalancer",
                    "--port", "8080", "--target-port", "80", "-n", NS)

    def ingress_ip() -> str | None:
        svc = cluster.kubectl_json("get", "service", "web-lb", "-n", NS)
        ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
        return ingress[0].get("ip") if ingress else None

    ip = wait_until(ingress_ip, timeout=30, what="a LoadBalancer ingress IP")
    assert ipaddress.ip_address(ip) in pool, (ip, pool)
    assert ip in cluster.kubectl("get", "service", "web-lb", "-n", NS).stdout  # EXTERNAL-IP
    wait_until(lambda: endpoints_ready(cluster, "web-lb", 2), timeout=30, what="2 endpoints")
    url = f"http://{ip}:8080/"
    first = wait_until(lambda: _try_get(url), timeout=15, what=f"{url} to answer")
    pages = [first, *get_pages(url, 30)]
    assert {served_by(page)[0] for page in pages} == set(web)
    # the address lives on this node's load-balancer link, and leaves with the Service
    link = Path(f"/sys/class/net/{cluster.prefix}lb")
    assert link.exists()
    assert ip in _addresses(f"{cluster.prefix}lb")
    cluster.kubectl("delete", "service", "web-lb", "-n", NS)
    wait_until(lambda: ip not in _addresses(f"{cluster.prefix}lb"), timeout=30,
               what=f"{ip} to leave the load-balancer link")


def _try_get(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def _addresses(link: str) -> str:
    return subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", link], capture_output=True,
                          text=True, check=False).stdout


#: httpd under a shell that stops it at once on SIGTERM (busybox httpd as
#: pid 1 has no handler and would only go at the end of the grace period).
STOPS_ON_SIGTERM = "trap 'kill $pid; exit 0' TERM; /usr/local/bin/httpd-start & pid=$!; wait"


def _quick_deployment(image: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "quick"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "quick"}},
                 "template": {"metadata": {"labels": {"app": "quick"}}, "spec": {"containers": [{
                     "name": "httpd", "image": image, "command": ["sh", "-c", STOPS_ON_SIGTERM],
                     "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}}})


def test_rolling_updates_of_pods_that_stop_on_sigterm_lose_no_request(
        cluster: NodeServer, node_images: NodeImages) -> None:  # noqa: F811
    """Old pods exit as soon as they get SIGTERM: the agent sends it only
    once its service rules no longer route to the pod, so a client keeps
    getting answers through three rolling updates."""
    cluster.kubectl("apply", "-n", NS, "-f", "-", input=_quick_deployment(node_images.httpd_v1))
    cluster.kubectl("expose", "deployment", "quick", "--port", "80", "-n", NS)
    cluster.kubectl("rollout", "status", "deployment/quick", "-n", NS, "--timeout=120s",
                    timeout=130)
    client = client_pod(cluster, NS, node_images.busybox)
    cluster_ip = cluster.kubectl_json("get", "service", "quick", "-n", NS)["spec"]["clusterIP"]
    loop = ("rm -f /tmp/stop /tmp/results; (while [ ! -f /tmp/stop ]; do "
            f"if page=$(timeout 5 wget -qO- http://{cluster_ip}/ 2>&1); "
            'then echo "OK $page"; else echo "FAILED $? $page"; fi >> /tmp/results; '
            "done) >/dev/null 2>&1 &")
    cluster.kubectl("exec", "-n", NS, client, "--", "sh", "-c", loop)
    for image in (node_images.httpd_v2, node_images.httpd_v1, node_images.httpd_v2):
        cluster.kubectl("apply", "-n", NS, "-f", "-", input=_quick_deployment(image))
        cluster.kubectl("rollout", "status", "deployment/quick", "-n", NS, "--timeout=120s",
                        timeout=130)
    wait_until(lambda: len(pods(cluster, NS, "app=quick")) == 3, timeout=60,
               what="the old pods to stop")
    cluster.kubectl("exec", "-n", NS, client, "--", "touch", "/tmp/stop")
    time.sleep(1)
    lines = cluster.kubectl("exec", "-n", NS, client, "--", "cat", "/tmp/results").stdout.splitlines()
    failed = [line for line in lines if not line.startswith("OK ")]
    assert len(lines) > 100
    assert not failed, f"{len(failed)} of {len(lines)} requests failed: {failed[:10]}"
    # the last rollout (to version 2) took over; a request may still have
    # been in flight on its way to an old pod when the client stopped
    assert "2" in {served_by(line)[1] for line in lines[-20:]}
