"""A throw-away test network for the tap test: a bridge, and a network
namespace joined to it by a veth pair, all named ``kvq<hex>``; HTTP is
only ever sent from inside that namespace to the guest on the bridge.
Everything is removed on exit, also after a failure."""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _ip(*args: str, check: bool = True) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check).stdout


@dataclass
class TestNet:
    prefix: str
    bridge: str
    tap: str
    netns: str
    peer_ip: str
    guest_ip: str

    def link_master(self, name: str) -> str | None:
        out = _ip("-o", "link", "show", "dev", name, check=False)
        if not out:
            return None
        words = out.split()
        return words[words.index("master") + 1] if "master" in words else ""

    def http_get_from_netns(self, ip: str, *, timeout: int = 20) -> str:
        """GET / from ``ip``, sent from inside the test namespace (Python
        there; the host's static busybox wget crashes on name lookups)."""
        done = subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", _HTTP_GET,
                               ip, str(timeout)], capture_output=True, text=True, timeout=timeout + 15)
        assert done.returncode == 0, done.stderr
        return done.stdout


_HTTP_GET = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        with socket.create_connection((sys.argv[1], 80), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        print(data.decode(errors="replace"))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
"""


@contextmanager
def test_bridge() -> Iterator[TestNet]:
    prefix = f"kvq{secrets.token_hex(2)}"
    a, b = random.randrange(200, 250), random.randrange(0, 256)
    net = TestNet(prefix=prefix, bridge=f"{prefix}br", tap=f"{prefix}tap", netns=f"{prefix}ns",
                  peer_ip=f"10.{a}.{b}.2", guest_ip=f"10.{a}.{b}.5")
    try:
        _ip("link", "add", net.bridge, "type", "bridge")
        _ip("link", "set", net.bridge, "up")
        _ip("netns", "add", net.netns)
        _ip("link", "add", f"{prefix}h", "type", "veth", "peer", "name", f"{prefix}n")
        _ip("link", "set", f"{prefix}h", "master", net.bridge, "up")
        _ip("link", "set", f"{prefix}n", "netns", net.netns)
        _ip("-n", net.netns, "addr", "add", f"{net.peer_ip}/24", "dev", f"{prefix}n")
        _ip("-n", net.netns, "link", "set", f"{prefix}n", "up")
        _ip("-n", net.netns, "link", "set", "lo", "up")
        yield net
    finally:
        for link in (f"{prefix}h", net.tap, net.bridge):
            _ip("link", "del", link, check=False)
        _ip("netns", "del", net.netns, check=False)
