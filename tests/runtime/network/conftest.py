"""Fixtures: a test network of its own (random name prefix ``kvt<hex>``,
random pod and service /24s from 10.x test ranges, a temporary state dir),
and the clean-up that removes all of it, even after a failure — through
the code under test first, then by a sweep with ``ip``/``nft`` so a bug in
the former leaks nothing."""

from __future__ import annotations

import os
import random
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kubevisor.runtime.network import NetworkConfig, NodeNetwork, remove_network, start_network
from kubevisor.runtime.network.config import RulesBackend

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, links, nftables)")


def leftovers(prefix: str) -> list[str]:
    """Links, namespaces and nft tables whose names start with ``prefix``."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    found = [f"link {n}" for n in names if n.startswith(prefix)]
    found += [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(prefix)] \
        if os.path.isdir("/run/netns") else []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [f"nft {t}" for t in tables.split() if t.startswith(prefix)]
    for table in ("nat", "filter"):
        saved = subprocess.run(["iptables-nft-save", "-t", table], capture_output=True, text=True).stdout
        found += [f"iptables {line}" for line in saved.splitlines() if prefix.upper() in line]
    return found


def sweep(prefix: str) -> None:
    for item in leftovers(prefix):
        kind, name = item.split(" ", 1)
        if kind == "link":
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        elif kind == "netns":
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        elif kind == "nft":
            subprocess.run(["nft", "delete", "table", "ip", name], capture_output=True)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[NetworkConfig]:
    if os.geteuid() != 0:
        pytest.skip("needs root (netns, links, nftables)")
    prefix = f"kvt{secrets.token_hex(2)}"
    a, b = random.randrange(200, 250), random.randrange(0, 256)
    cfg = NetworkConfig.with_prefix(
        prefix, pod_cidr=f"10.{a}.{b}.0/24", service_cidr=f"10.{a + 1}.{b}.0/24",
        state_dir=str(tmp_path / "network"))
    try:
        yield cfg
    finally:
        sweep(prefix)


@pytest.fixture
def rules_backend() -> RulesBackend:
    """Overridden (parametrized) where a suite runs against every writer."""
    return "nftables"


@pytest.fixture
async def network(config: NetworkConfig, rules_backend: RulesBackend) -> AsyncIterator[NodeNetwork]:
    try:
        # nftables is what detection must find here; the fallback is forced.
        net = await start_network(
            config, rules_backend=None if rules_backend == "nftables" else rules_backend)
        assert net.capabilities.rules_backend == rules_backend
        yield net
    finally:
        await remove_network(config, rules_backend=rules_backend)
        assert leftovers(config.veth_prefix) == [], "remove_network left these"
