"""The service proxy against the real kernel (root): ClusterIP load
balancing, rejects without backends, NodePort on 127.0.0.1, external IPs,
hairpin, and replacement on sync. Traffic only goes to addresses inside
the test's own namespaces and bridge, or 127.0.0.1."""

from __future__ import annotations

import ipaddress
import random
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest

from kubevisor.runtime.network import NodeNetwork
from kubevisor.runtime.network.config import RulesBackend
from kubevisor.runtime.types import PodNetworkInfo, ServiceBackend, ServiceRule

from .podproc import connect, host_connect, tcp_server

PORT = 8080


def _nft_tables() -> set[str]:
    return set(subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines())


@pytest.fixture(params=["nftables", "iptables-nft"])
def rules_backend(request: pytest.FixtureRequest) -> Iterator[RulesBackend]:
    """Every test here runs with nftables and with the iptables fallback;
    the iptables ``nat``/``filter`` tables it had to create go again if empty."""
    before = _nft_tables()
    yield request.param
    for line in sorted(_nft_tables() - before):
        family, name = line.split()[1:3]
        rules = subprocess.run(["nft", "list", "table", family, name],
                               capture_output=True, text=True).stdout
        if name in ("nat", "filter") and not any(
                x.strip() and not x.strip().startswith(("table", "chain", "type", "}"))
                for x in rules.splitlines()):
            subprocess.run(["nft", "delete", "table", family, name], capture_output=True)


def _service_ip(network: NodeNetwork, n: int) -> str:
    return str(ipaddress.ip_network(network.config.service_cidr)[n])


@pytest.fixture
async def backends(network: NodeNetwork) -> AsyncIterator[list[PodNetworkInfo]]:
    """Three pods, each answering its own name on PORT."""
    pods = [await network.pods.setup_pod(f"backend-{i}") for i in range(3)]
    async with AsyncExitStack() as stack:
        for i, pod in enumerate(pods):
            await stack.enter_async_context(tcp_server(pod.netns, f"backend-{i}", PORT))
        yield pods


def _rule(network: NodeNetwork, pods: list[PodNetworkInfo], **kwargs: object) -> ServiceRule:
    return ServiceRule(name="default/web:http", protocol="TCP", cluster_ip=_service_ip(network, 10),
                       port=80, backends=[ServiceBackend(p.ip, PORT) for p in pods], **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
async def test_cluster_ip_spreads_over_all_backends(network: NodeNetwork,
                                                    backends: list[PodNetworkInfo]) -> None:
    client = await network.pods.setup_pod("client")
    await network.proxy.sync([_rule(network, backends)])
    got = await connect(client.netns, _service_ip(network, 10), 80, count=30)
    assert set(got) == {"backend-0", "backend-1", "backend-2"}, got


async def test_host_reaches_cluster_ip(network: NodeNetwork, backends: list[PodNetworkInfo]) -> None:
    await network.proxy.sync([_rule(network, backends)])
    assert (await host_connect(_service_ip(network, 10), 80)).startswith("backend-")


async def test_service_without_backends_refuses_quickly(network: NodeNetwork) -> None:
    client = await network.pods.setup_pod("client")
    await network.proxy.sync([_rule(network, [], node_port=None)])
    started = time.monotonic()
    assert await connect(client.netns, _service_ip(network, 10), 80) == ["!refused"]
    assert await host_connect(_service_ip(network, 10), 80) == "!refused"
    assert time.monotonic() - started < 5  # includes starting a python in the namespace


async def test_node_port_on_loopback(network: NodeNetwork, backends: list[PodNetworkInfo]) -> None:
    node_port = random.randrange(30000, 32768)
    await network.proxy.sync([_rule(network, backends, node_port=node_port)])
    assert (await host_connect("127.0.0.1", node_port)).startswith("backend-")
    # From a pod, through the node's address on the bridge.
    client = await network.pods.setup_pod("client")
    assert (await connect(client.netns, client.gateway, node_port))[0].startswith("backend-")
    # Without backends it refuses instead of hanging.
    await network.proxy.sync([_rule(network, [], node_port=node_port)])
    assert await host_connect("127.0.0.1", node_port) == "!refused"


def _lb_addresses(network: NodeNetwork) -> str:
    return subprocess.run(["ip", "-4", "-o", "addr", "show", network.config.lb_link],
                          capture_output=True, text=True, check=True).stdout


async def test_external_ip_announced_reachable_and_withdrawn(
        network: NodeNetwork, backends: list[PodNetworkInfo]) -> None:
    # An address of the test's own: in its service /24, routed to its bridge.
    external = _service_ip(network, 250)
    await network.proxy.sync([_rule(network, backends, external_ips=[external])])
    assert f"{external}/32" in _lb_addresses(network)
    assert (await host_connect(external, 80)).startswith("backend-")
    await network.proxy.sync([_rule(network, backends)])
    assert f"{external}/32" not in _lb_addresses(network)


async def test_hairpin_pod_reaches_itself_through_its_service(network: NodeNetwork) -> None:
    pod = await network.pods.setup_pod("lonely")
    async with tcp_server(pod.netns, "lonely", PORT):
        await network.proxy.sync([_rule(network, [pod])])
        assert await connect(pod.netns, _service_ip(network, 10), 80, count=2) == ["lonely"] * 2


@pytest.mark.slow
async def test_sync_replaces_backends(network: NodeNetwork, backends: list[PodNetworkInfo]) -> None:
    client = await network.pods.setup_pod("client")
    await network.proxy.sync([_rule(network, backends[:1])])
    assert set(await connect(client.netns, _service_ip(network, 10), 80, count=5)) == {"backend-0"}
    await network.proxy.sync([_rule(network, backends[1:])])
    got = await connect(client.netns, _service_ip(network, 10), 80, count=20)
    assert set(got) == {"backend-1", "backend-2"}, got
    await network.proxy.sync([])
    assert await connect(client.netns, _service_ip(network, 10), 80) != ["backend-0"]
    if network.capabilities.rules_backend == "nftables":
        listing = subprocess.run(["nft", "list", "table", "ip", network.config.nft_table],
                                 capture_output=True, text=True, check=True).stdout
    else:
        listing = subprocess.run(["iptables-nft-save", "-t", "nat"],
                                 capture_output=True, text=True, check=True).stdout
        listing = "\n".join(x for x in listing.splitlines() if network.config.nft_table.upper() in x)
        assert "-SERVICES" in listing
    assert "dnat" not in listing.lower()
