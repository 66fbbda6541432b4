"""Fixtures for the VM runner's tests: the host's QEMU capabilities (probed
with the test guest's kernel, cached in the repository's ``.cache``), the
test guest as a kernel-boot disk image, and a host to run VMs on."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator

import pytest

from kubevisor.runtime.guest import build_test_disk_image
from kubevisor.runtime.qemu import VMCapabilities
from kubevisor.runtime.qemu.probe import probe
from tests.node.e2e import require_drivers
from tests.node.vms.host import VMHost, vm_host
from tests.runtime.qemu.guestvm import CACHE, ROOT, guest_image


def require_vms() -> None:
    require_drivers()
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    if os.geteuid() != 0:
        pytest.skip("VMs on the node bridge need root")


@pytest.fixture(scope="session")
def vm_caps() -> VMCapabilities:
    require_vms()
    cache = ROOT / ".cache" / "qemu-probe.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    return asyncio.run(probe(cache_path=str(cache), kernel=guest_image().kernel))


@pytest.fixture(scope="session")
def guest_disk() -> str:
    require_vms()
    return build_test_disk_image(CACHE)


@pytest.fixture
async def host(vm_caps: VMCapabilities) -> AsyncIterator[VMHost]:
    async with vm_host(vm_caps) as h:
        yield h
