"""IPAM: the file-backed allocator (no root needed)."""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from pathlib import Path

import pytest

from kubevisor.runtime.errors import NetworkError
from kubevisor.runtime.network.ipam import Ipam


def test_skips_network_gateway_and_broadcast(tmp_path: Path) -> None:
    ipam = Ipam("10.200.7.0/29", tmp_path)
    got = [str(ipam.allocate(f"p{i}")) for i in range(5)]
    assert got == ["10.200.7.2", "10.200.7.3", "10.200.7.4", "10.200.7.5", "10.200.7.6"]
    with pytest.raises(NetworkError, match="no free address"):
        ipam.allocate("one-too-many")


def test_same_owner_same_address_and_release(tmp_path: Path) -> None:
    ipam = Ipam("10.200.7.0/24", tmp_path)
    a = ipam.allocate("a")
    assert ipam.allocate("a") == a
    assert ipam.release("a") == a
    assert ipam.release("a") is None
    assert ipam.get("a") is None


def test_survives_a_new_object_without_double_allocation(tmp_path: Path) -> None:
    first = Ipam("10.200.7.0/24", tmp_path)
    a, b = first.allocate("a"), first.allocate("b")
    second = Ipam("10.200.7.0/24", tmp_path)
    assert second.allocations() == {"a": str(a), "b": str(b)}
    c = second.allocate("c")
    assert c not in (a, b)
    assert first.allocate("c") == c  # the first object sees the second's write
    assert json.loads((tmp_path / "ipam.json").read_text())["allocations"]["c"] == str(c)


def test_released_address_is_not_reused_at_once(tmp_path: Path) -> None:
    ipam = Ipam("10.200.7.0/24", tmp_path)
    a = ipam.allocate("a")
    ipam.release("a")
    assert ipam.allocate("b") != a


def test_reserve_adopts_and_refuses_conflicts(tmp_path: Path) -> None:
    ipam = Ipam("10.200.7.0/24", tmp_path)
    ipam.reserve("x", "10.200.7.50")
    assert ipam.get("x") == ipaddress.IPv4Address("10.200.7.50")
    with pytest.raises(NetworkError, match="already allocated"):
        ipam.reserve("y", "10.200.7.50")
    with pytest.raises(NetworkError, match="not an allocatable"):
        ipam.reserve("y", "10.200.7.1")  # the gateway


def test_concurrent_allocations_are_distinct(tmp_path: Path) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        ipam = Ipam("10.200.7.0/24", tmp_path)  # one object each: only the flock protects
        for i in range(20):
            ip = str(ipam.allocate(f"w{n}-{i}"))
            with lock:
                results.append(ip)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and len(set(results)) == 80


def test_other_cidr_with_allocations_is_refused(tmp_path: Path) -> None:
    Ipam("10.200.7.0/24", tmp_path).allocate("a")
    with pytest.raises(NetworkError, match=re.escape("is for 10.200.7.0/24")):
        Ipam("10.200.8.0/24", tmp_path).allocate("b")
