"""The node agent as a child process of ``kubevisor up`` (or ``join``).

:func:`node_agent_process` starts ``python -m kubevisor.node`` with
``--parent-pid`` (it exits if its parent dies, even by SIGKILL) and stops
it with SIGTERM on exit, SIGKILL after ``stop_seconds``. Containers outlive
it either way: the next agent re-adopts them. A child process keeps the
agent's blocking work (runc calls, file reads, netlink) off the
apiserver's event loop, and lets tests kill the agent alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def agent_argv(kubeconfig: Path, data_dir: Path, *, node_name: str | None = None,
               pod_cidr: str | None = None, node_ip: str | None = None,
               extra: Sequence[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "kubevisor.node", str(kubeconfig), str(data_dir),
            "--parent-pid", str(os.getpid())]
    for flag, value in (("--node-name", node_name), ("--pod-cidr", pod_cidr),
                        ("--node-ip", node_ip)):
        if value:
            argv += [flag, value]
    return [*argv, *extra]


@contextlib.asynccontextmanager
async def node_agent_process(kubeconfig: Path, data_dir: Path, *, node_name: str | None = None,
                             pod_cidr: str | None = None, node_ip: str | None = None,
                             extra: Sequence[str] = (),
                             stop_seconds: float = 10.0) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *agent_argv(kubeconfig, data_dir, node_name=node_name, pod_cidr=pod_cidr,
                    node_ip=node_ip, extra=extra),
        stdin=asyncio.subprocess.DEVNULL)
    stopping = False

    async def watch() -> None:
        code = await proc.wait()
        if not stopping:
            log.error("node agent process exited with %s", code)

    watcher = asyncio.create_task(watch())
    try:
        yield proc
    finally:
        stopping = True
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(watcher), stop_seconds)
        except TimeoutError:
            log.warning("node agent did not stop within %ss; killed", stop_seconds)
            proc.kill()
            await watcher
