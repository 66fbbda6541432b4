"""Pod namespaces on the bridge, against the real kernel (root)."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.network import BridgePodNetwork, NetworkConfig, NodeNetwork
from kubevisor.runtime.network.pods import POD_IFNAME

from .conftest import leftovers
from .podproc import connect, tcp_server


def _ns_addresses(netns_path: str) -> str:
    return subprocess.run(["ip", "-n", os.path.basename(netns_path), "-4", "-o", "addr"],
                          capture_output=True, text=True, check=True).stdout


def _host_link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


async def test_two_pods_reach_each_other_over_tcp(network: NodeNetwork) -> None:
    a = await network.pods.setup_pod("pod-a")
    b = await network.pods.setup_pod("pod-b")
    assert a.ip != b.ip and a.gateway == b.gateway == str(network.config.gateway)
    assert f"{POD_IFNAME}" in _ns_addresses(a.netns) and f"{a.ip}/{a.prefix_len}" in _ns_addresses(a.netns)
    async with tcp_server(b.netns, "server-b", 8080):
        assert await connect(a.netns, b.ip, 8080, count=3) == ["server-b"] * 3


async def test_pod_reaches_the_gateway(network: NodeNetwork) -> None:
    pod = await network.pods.setup_pod("pod-gw")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"host\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, pod.gateway, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await connect(pod.netns, pod.gateway, port) == ["host"]


async def test_setup_twice_is_idempotent_and_survives_a_restart(network: NodeNetwork) -> None:
    first = await network.pods.setup_pod("pod-x")
    assert await network.pods.setup_pod("pod-x") == first
    # A new object over the same config (the agent restarted) finds the pod.
    again = BridgePodNetwork(network.config)
    await again.start()
    assert (await again.list_pods()) == {"pod-x": first}
    assert await again.setup_pod("pod-x") == first
    assert _ns_addresses(first.netns).count(first.ip) == 1


async def test_setup_repairs_a_half_made_pod(network: NodeNetwork) -> None:
    info = await network.pods.setup_pod("pod-r")
    host_if = network.pods.host_ifname("pod-r")
    subprocess.run(["ip", "link", "del", host_if], check=True)  # takes eth0 with it
    assert await network.pods.setup_pod("pod-r") == info
    assert f"{info.ip}/" in _ns_addresses(info.netns)


async def test_teardown_leaves_nothing_and_is_idempotent(network: NodeNetwork) -> None:
    info = await network.pods.setup_pod("pod-t")
    host_if = network.pods.host_ifname("pod-t")
    assert os.path.exists(info.netns) and _host_link_exists(host_if)
    await network.pods.teardown_pod("pod-t")
    await network.pods.teardown_pod("pod-t")
    assert not os.path.exists(info.netns)
    assert not _host_link_exists(host_if)
    assert network.pods.ipam.get("pod-t") is None
    assert await network.pods.list_pods() == {}
    assert [x for x in leftovers(network.config.veth_prefix) if "link" in x and "lb" not in x
            and x != f"link {network.config.bridge}"] == []


async def test_failed_setup_leaves_nothing(network: NodeNetwork) -> None:
    subprocess.run(["ip", "link", "del", network.config.bridge], check=True)
    with pytest.raises(NetworkError, match="bridge"):
        await network.pods.setup_pod("pod-f")
    assert not os.path.exists(network.pods.netns_path("pod-f"))
    assert not _host_link_exists(network.pods.host_ifname("pod-f"))
    assert network.pods.ipam.allocations() == {}
    await network.pods.start()  # the bridge comes back on the next start
    assert (await network.pods.setup_pod("pod-f")).ip


async def test_start_clears_what_a_crash_left(network: NodeNetwork, config: NetworkConfig) -> None:
    kept = await network.pods.setup_pod("kept")
    gone = await network.pods.setup_pod("gone")
    subprocess.run(["ip", "netns", "del", os.path.basename(gone.netns)], check=True)
    stray = f"{config.netns_prefix}deadbeef"
    subprocess.run(["ip", "netns", "add", stray], check=True)
    await BridgePodNetwork(config).start()
    assert await network.pods.list_pods() == {"kept": kept}
    assert network.pods.ipam.get("gone") is None
    assert not os.path.exists(f"/run/netns/{stray}")
    assert not _host_link_exists(network.pods.host_ifname("gone"))


async def test_bridge_set_up_again_is_idempotent(network: NodeNetwork) -> None:
    await network.pods.start()
    await network.pods.start()
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", network.config.bridge],
                         capture_output=True, text=True, check=True).stdout
    assert out.count(f"{network.config.gateway}/") == 1
    tables = subprocess.run(["nft", "list", "table", "ip", network.config.node_table],
                            capture_output=True, text=True, check=True).stdout
    assert tables.count("masquerade") == 1
