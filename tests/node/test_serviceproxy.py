"""The node agent's kube-proxy: the pure Service/Endpoints → rules
translation, and a live run against the real apiserver that programs the
real nftables proxy of a test network (its own prefix, cleaned up)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import subprocess
from pathlib import Path

import pytest

from kubevisor.client import Client
from kubevisor.node.serviceproxy import ServiceProxyController, service_rules
from kubevisor.runtime.types import ServiceBackend
from tests.client.live import live_apiserver, require_apiserver


def _svc(name: str, *, ip: str = "10.96.0.10", ports: list[dict] | None = None,
         type_: str = "ClusterIP", ingress: list[str] | None = None) -> dict:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"type": type_, "clusterIP": ip,
                    "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP"}]}}
    if ingress:
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": i} for i in ingress]}}
    return svc


def _ep(name: str, ready: list[str], not_ready: list[str] = (), port_name: str = "http",
        port: int = 8080) -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": [{"ip": ip} for ip in ready],
                         "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                         "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}]}


def test_rules_use_ready_endpoints_of_the_named_port() -> None:
    services = [_svc("web", ports=[{"name": "http", "port": 80}, {"name": "admin", "port": 9000}])]
    endpoints = {("default", "web"): _ep("web", ["10.88.0.5", "10.88.0.4"], ["10.88.0.9"])}
    rules = service_rules(services, endpoints)
    assert [r.name for r in rules] == ["default/web:admin", "default/web:http"]
    http = rules[1]
    assert (http.cluster_ip, http.port, http.protocol) == ("10.96.0.10", 80, "TCP")
    assert list(http.backends) == [ServiceBackend("10.88.0.4", 8080), ServiceBackend("10.88.0.5", 8080)]
    assert rules[0].backends == ()  # no endpoint port named "admin"


def test_headless_externalname_and_sctp_get_no_rule() -> None:
    services = [_svc("headless", ip="None"), _svc("pending", ip=""),
                {**_svc("ext"), "spec": {"type": "ExternalName", "externalName": "x.example"}},
                _svc("sctp", ports=[{"port": 7, "protocol": "SCTP"}])]
    assert service_rules(services, {}) == []


def test_node_ports_and_load_balancer_ips() -> None:
    lb = _svc("lb", type_="LoadBalancer", ingress=["172.31.255.7"],
              ports=[{"port": 80, "nodePort": 31000}])
    plain = _svc("plain", ip="10.96.0.11", ports=[{"port": 80, "nodePort": 31001}])
    rules = {r.name: r for r in service_rules([lb, plain], {})}
    assert rules["default/lb:80"].node_port == 31000
    assert list(rules["default/lb:80"].external_ips) == ["172.31.255.7"]
    assert rules["default/plain:80"].node_port is None  # ClusterIP: a stray nodePort is ignored


def _nft_table(table: str) -> str:
    return subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                          text=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (nftables)")
async def test_live_services_program_the_host(tmp_path: Path) -> None:
    require_apiserver()
    from kubevisor.runtime.network import NetworkConfig, remove_network, start_network

    prefix = f"kvp{secrets.token_hex(2)}"
    a, b = random.randrange(200, 250), random.randrange(0, 256)
    config = NetworkConfig.with_prefix(prefix, pod_cidr=f"10.{a}.{b}.0/24",
                                       service_cidr=f"10.{a + 1}.{b}.0/24",
                                       state_dir=str(tmp_path / "network"))
    net = await start_network(config)
    try:
        async with live_apiserver(tmp_path / "api") as live, \
                Client.from_kubeconfig(live.kubeconfig) as client:
            await client.create({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "default"}})
            controller = ServiceProxyController(client, net.proxy, debounce_seconds=0.01)
            task = asyncio.create_task(controller.run())
            try:
                svc = _svc("web", ip="")  # the apiserver allocates it
                del svc["spec"]["clusterIP"]
                created = await client.create(svc, namespace="default")
                cluster_ip = created["spec"]["clusterIP"]
                endpoints = {"apiVersion": "v1", "kind": "Endpoints", **_ep("web", [f"10.{a}.{b}.7"])}
                await client.create(endpoints, namespace="default")
                await _until(lambda: cluster_ip in _nft_table(config.nft_table)
                             and f"10.{a}.{b}.7" in _nft_table(config.nft_table))
                # the table is written before the controller counts the sync
                await _until(lambda: controller.routes_to(f"10.{a}.{b}.7"))
                await asyncio.sleep(0.3)  # settled: nothing changes, nothing is written
                syncs = controller.syncs
                await asyncio.sleep(0.3)
                assert controller.syncs == syncs
                await client.patch("v1", "Endpoints", "web",
                                   {"subsets": _ep("web", [f"10.{a}.{b}.8"])["subsets"]},
                                   namespace="default")
                await _until(lambda: f"10.{a}.{b}.8" in _nft_table(config.nft_table)
                             and f"10.{a}.{b}.7" not in _nft_table(config.nft_table))
                assert controller.syncs > syncs
                await client.delete("v1", "Service", "web", namespace="default")
                await _until(lambda: cluster_ip not in _nft_table(config.nft_table))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await remove_network(config)


async def _until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


class _RecordingProxy:
    """A ServiceProxy that keeps the last rules it was given (the controller's
    waiters are what is under test here, not the kernel's rules)."""

    def __init__(self) -> None:
        self.rules: list = []

    async def start(self) -> None:
        pass

    async def sync(self, rules) -> None:  # type: ignore[no-untyped-def]
        self.rules = list(rules)

    async def remove(self) -> None:
        pass


async def test_wait_unrouted_returns_once_the_rules_drop_the_ip(tmp_path: Path) -> None:
    """What a deleted pod's worker waits for before SIGTERM: the endpoint gone
    from the applied rules; a timeout (False) when it stays."""
    require_apiserver()
    async with live_apiserver(tmp_path / "api") as live, \
            Client.from_kubeconfig(live.kubeconfig) as client:
        await client.create({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": "default"}})
        controller = ServiceProxyController(client, _RecordingProxy(), debounce_seconds=0.01)
        task = asyncio.create_task(controller.run())
        try:
            svc = _svc("web", ip="")
            del svc["spec"]["clusterIP"]
            await client.create(svc, namespace="default")
            await client.create({"apiVersion": "v1", "kind": "Endpoints",
                                 **_ep("web", ["10.88.0.7", "10.88.0.8"])}, namespace="default")
            await _until(lambda: controller.routes_to("10.88.0.7") and controller.routes_to("10.88.0.8"))
            assert not controller.routes_to("10.88.0.9")
            assert await controller.wait_unrouted("10.88.0.9", 1.0)
            waiter = asyncio.create_task(controller.wait_unrouted("10.88.0.7", 10.0))
            await asyncio.sleep(0.1)
            assert not waiter.done()
            began = asyncio.get_running_loop().time()
            await client.patch("v1", "Endpoints", "web",
                               {"subsets": _ep("web", ["10.88.0.8"])["subsets"]}, namespace="default")
            assert await asyncio.wait_for(waiter, 5.0)
            assert asyncio.get_running_loop().time() - began < 2.0
            assert not controller.routes_to("10.88.0.7")
            assert await controller.wait_unrouted("10.88.0.8", 0.2) is False
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
