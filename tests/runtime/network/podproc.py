"""Processes inside a test pod's network namespace: a TCP server that
answers every connection with its name, and a client that makes N
connections and reports what each got. Both run as ``ip netns exec NS
python -c ...`` so the traffic starts and ends inside namespaces the test
created."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

_SERVER = """
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(name.encode() + b"\\n")
    finally:
        c.close()
"""

_CLIENT = """
import json, socket, sys
ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(count):
    try:
        with socket.create_connection((ip, port), timeout=3) as c:
            out.append(c.makefile().readline().strip())
    except ConnectionRefusedError:
        out.append("!refused")
    except TimeoutError:
        out.append("!timeout")
    except OSError as exc:
        out.append("!" + type(exc).__name__)
print(json.dumps(out))
"""


def _ns(netns_path: str) -> str:
    return os.path.basename(netns_path)


@asynccontextmanager
async def tcp_server(netns_path: str, name: str, port: int) -> AsyncIterator[None]:
    """A server in the namespace that answers ``name`` on ``port``."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", _ns(netns_path), sys.executable, "-c", _SERVER, name, str(port),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"ready", line
        yield
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def connect(netns_path: str, ip: str, port: int, count: int = 1) -> list[str]:
    """What ``count`` connections from the namespace to ip:port got: the
    server's name, or ``!refused``/``!timeout``/``!<error>``."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", _ns(netns_path), sys.executable, "-c", _CLIENT, ip, str(port),
        str(count), stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60 + 4 * count)
    assert proc.returncode == 0
    result: list[str] = json.loads(out)
    return result


async def host_connect(ip: str, port: int, timeout: float = 3) -> str:
    """One connection from the host (the test process) to ip:port."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except ConnectionRefusedError:
        return "!refused"
    except TimeoutError:
        return "!timeout"
    try:
        return (await asyncio.wait_for(reader.readline(), timeout)).decode().strip()
    finally:
        writer.close()
        await writer.wait_closed()
