"""Fixtures for the QEMU driver's tests: the host's capabilities (probed
once per session, cached in the repository's ``.cache``), and a fresh
driver per test on its own state directory whose teardown deletes every
VM it made and checks that no QEMU process of it is left."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.runtime.qemu import QemuDriver, VMCapabilities
from kubevisor.runtime.qemu.probe import probe
from tests.runtime.qemu.guestvm import ROOT, guest_image

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86 is not installed")
PROBE_CACHE = ROOT / ".cache" / "qemu-probe.json"


def qemu_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes() and \
                    (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def capabilities() -> VMCapabilities:
    PROBE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    return asyncio.run(probe(cache_path=str(PROBE_CACHE), kernel=guest_image().kernel))


@pytest.fixture
async def driver(tmp_path: Path, capabilities: VMCapabilities) -> AsyncIterator[QemuDriver]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    root = tmp_path / "vms"
    drv = QemuDriver(root, capabilities=capabilities)
    try:
        yield drv
    finally:
        for state in await drv.list():
            await drv.delete(state.id)
        left = qemu_processes(str(root))
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"QEMU processes left behind: {left}"
