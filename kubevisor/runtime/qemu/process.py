"""The QEMU process of one VM, found through its pid file: alive or not
(a zombie counts as gone), really ours (its command line names the VM's
QMP socket, so a reused pid is never mistaken for it), waited for and
killed without being its parent (QEMU daemonizes). Used by the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from kubevisor.runtime.qemu.paths import VMPaths


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def find(paths: VMPaths) -> int | None:
    """The pid of this VM's running QEMU, or None."""
    try:
        pid = int(paths.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if str(paths.qmp).encode() not in cmdline or not _alive(pid):
        return None
    return pid


def started_at(pid: int) -> float | None:
    """The process start time in Unix seconds (from /proc)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


async def wait_gone(pid: int, *, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to end; True when it has."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def kill(pid: int, *, timeout: float = 10.0) -> None:
    """SIGKILL and wait for the end."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    await wait_gone(pid, timeout=timeout)
