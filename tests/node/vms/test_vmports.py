"""VM addresses from the pod network's IPAM: allocated per NIC, stable,
released per VM, and never collected by the pod network's garbage
collector (a VM has no network namespace)."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest

from kubevisor.runtime.network import BridgePodNetwork, NetworkConfig
from kubevisor.runtime.network.vmports import VMPorts, is_vm_owner, owner


def _config(tmp_path: Path) -> NetworkConfig:
    return NetworkConfig.with_prefix(f"kvp{secrets.token_hex(2)}", pod_cidr="10.77.3.0/24",
                                     state_dir=str(tmp_path / "net"))


async def test_allocate_release_owners(tmp_path: Path) -> None:
    ports = VMPorts(_config(tmp_path))
    a0 = await ports.allocate("uid-a", 0)
    a1 = await ports.allocate("uid-a", 1)
    b0 = await ports.allocate("uid-b", 0)
    assert len({a0.ip, a1.ip, b0.ip}) == 3
    assert (await ports.allocate("uid-a", 0)) == a0
    assert a0.gateway == "10.77.3.1" and a0.prefix_len == 24 and a0.cidr == f"{a0.ip}/24"
    assert a0.bridge == ports.config.bridge
    assert set(await ports.owners()) == {"uid-a", "uid-b"}
    assert sorted(await ports.release("uid-a")) == sorted([a0.ip, a1.ip])
    assert await ports.release("uid-a") == []
    assert await ports.owners() == {"uid-b": {0: b0}}
    assert owner("uid-b", 0) == "vm:uid-b/0" and is_vm_owner("vm:uid-b/0")


def test_pod_garbage_collector_keeps_vm_addresses(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the pod network's collector reads network namespaces (root)")
    config = _config(tmp_path)
    ports = VMPorts(config)
    vm = asyncio.run(ports.allocate("uid-vm", 0))
    net = BridgePodNetwork(config)
    net.ipam.allocate("pod-without-netns")
    net.collect_garbage()  # blocking, as start() runs it in a thread
    left = net.ipam.allocations()
    assert left == {"vm:uid-vm/0": vm.ip}
