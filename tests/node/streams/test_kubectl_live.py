"""The acceptance path: the real ``kubectl`` through the real apiserver to
the stream server, against a container run by the real OCI driver in its
own network namespace: logs (all, --tail, -f), exec (output, stderr and
exit code 3, stdin to EOF, a tty sized by the terminal) and port-forward
to a web server inside the pod."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.node.streams.live import (
    KUBECTL,
    Stage,
    kubectl,
    live_stage,
    require_live,
)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl not installed")]

WEB = ["sh", "-c", "echo hello; echo oops >&2; httpd -p 8080 -h /www; i=0; "
                   "while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    require_live()
    async with live_stage(tmp_path) as s:
        await s.make_pod("web", WEB)
        yield s


async def test_kubectl_logs(stage: Stage) -> None:
    await asyncio.sleep(0.5)
    rc, out, err = await kubectl(stage, "logs", "web")
    assert rc == 0, err
    lines = out.splitlines()
    # stdout and stderr are separate pipes: their lines interleave as conmon read them.
    assert [x for x in lines if x != "oops"][:2] == ["hello", "tick 0"], out
    assert "oops" in lines[:4], out
    rc, out, _ = await kubectl(stage, "logs", "web", "--tail=1")
    assert rc == 0 and re.fullmatch(r"tick \d+\n", out), out
    rc, out, _ = await kubectl(stage, "logs", "web", "--timestamps", "--limit-bytes=40")
    assert rc == 0 and len(out) == 40
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) hello\n", out), out
    rc, out, err = await kubectl(stage, "logs", "web", "--previous")
    assert rc == 1
    assert 'previous terminated container "app" in pod "web" not found' in err

    # -f: new lines keep coming until kubectl is stopped.
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(stage.kubeconfig), "logs", "-f", "web", "--tail=1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        seen = [await asyncio.wait_for(proc.stdout.readline(), 10) for _ in range(4)]
    finally:
        proc.terminate()
        await proc.wait()
    numbers = [int(line.split()[1]) for line in seen]
    assert numbers == list(range(numbers[0], numbers[0] + 4)), seen


async def test_kubectl_exec(stage: Stage) -> None:
    rc, out, err = await kubectl(stage, "exec", "web", "--", "cat", "/etc/hostname")
    assert (rc, out) == (0, "from-the-image\n"), err
    rc, out, err = await kubectl(stage, "exec", "web", "--", "hostname")
    assert (rc, out) == (0, "web\n"), err

    rc, out, err = await kubectl(stage, "exec", "web", "--", "sh", "-c",
                                 "echo to-out; echo to-err >&2; exit 3")
    assert (rc, out) == (3, "to-out\n")
    assert "to-err" in err and "command terminated with exit code 3" in err

    data = b"".join(b"line %d\n" % i for i in range(2000))
    rc, out, err = await kubectl(stage, "exec", "-i", "web", "--", "sh", "-c", "cat; echo done",
                                 input=data)
    assert rc == 0, err
    assert out.encode() == data + b"done\n"

    rc, out, err = await kubectl(stage, "exec", "web", "-c", "nope", "--", "true")
    assert rc == 1 and "Error from server" in err  # refused by the apiserver


async def test_kubectl_exec_tty_follows_the_terminal_size(stage: Stage) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 37, 123, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(stage.kubeconfig), "exec", "-it", "web", "--",
        "sh", "-c", "sleep 0.5; stty size; tty; read line; stty size; echo got $line",
        stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    loop = asyncio.get_running_loop()

    async def read_until(marker: bytes) -> None:
        nonlocal output
        while marker not in output:
            chunk = await asyncio.wait_for(loop.run_in_executor(None, os.read, master, 4096), 30)
            assert chunk, output
            output += chunk

    try:
        await read_until(b"/dev/pts/")
        assert b"37 123" in output, output
        # The user's terminal grows: kubectl sends the new size on channel 4.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        proc.send_signal(signal.SIGWINCH)
        await asyncio.sleep(0.5)
        os.write(master, b"hi there\r")
        await read_until(b"got hi there")
        assert b"50 160" in output, output
        assert await asyncio.wait_for(proc.wait(), 30) == 0, output
    finally:
        os.close(master)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def test_kubectl_port_forward(stage: Stage) -> None:
    await asyncio.sleep(0.3)  # httpd up
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(stage.kubeconfig), "port-forward", "pod/web",
        ":8080", ":9", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ports = {}
        while len(ports) < 2:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, (await proc.stderr.read()).decode()
            match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            if match:
                ports[int(match.group(2))] = int(match.group(1))
        async with httpx.AsyncClient() as client:
            for _ in range(3):  # one forwarded connection each
                r = await client.get(f"http://127.0.0.1:{ports[8080]}/index.html",
                                     headers={"Connection": "close"})
                assert r.status_code == 200 and r.text == "<h1>kubevisor streams</h1>\n"
        # Nothing listens on port 9 in the pod: the connection closes and
        # kubectl reports the node's error.
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[9])
        assert await asyncio.wait_for(reader.read(), 20) == b""
        writer.close()
        err = b""
        while b"connection refused" not in err:
            chunk = await asyncio.wait_for(proc.stderr.read(200), 20)
            assert chunk, err
            err += chunk
        assert b"error forwarding port 9 to pod web" in err, err
    finally:
        if proc.returncode is None:  # kubectl may already have exited on the port 9 error
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        await proc.wait()


async def test_kubectl_attach(stage: Stage) -> None:
    await stage.make_pod("echo", ["sh", "-c", "while read l; do echo got $l; done; echo bye >&2"],
                         stdin=True, netns=False)
    await asyncio.sleep(0.3)
    rc, out, err = await kubectl(stage, "attach", "-i", "echo", input=b"one\ntwo\n")
    assert rc == 0, err
    assert out == "got one\ngot two\n"
    assert "bye" in err
