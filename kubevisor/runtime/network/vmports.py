"""VM network ports on the node bridge: one address per VM NIC from the
pod network's own IPAM, recorded under the owner ``vm:<vm id>/<nic index>``.

The tap itself is made by the QEMU driver (``NetworkInterface(tap=...,
bridge=...)``); this module only hands out, finds and frees the address
the guest is told to use (cloud-init network-config). The pod network's
garbage collector never releases ``vm:`` owners (a VM has no network
namespace to prove it alive); :meth:`VMPorts.release` and
:meth:`VMPorts.owners` are how the node agent frees an address and finds
the ones a gone VM left. Called by the node agent's VM runner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .config import NetworkConfig
from .ipam import Ipam

#: Owners of VM addresses in the IPAM file start with this.
VM_OWNER_PREFIX = "vm:"


def owner(vm_id: str, index: int) -> str:
    """The IPAM owner of NIC ``index`` of VM ``vm_id``."""
    assert vm_id and "/" not in vm_id, f"bad VM id {vm_id!r}"
    return f"{VM_OWNER_PREFIX}{vm_id}/{index}"


def is_vm_owner(name: str) -> bool:
    return name.startswith(VM_OWNER_PREFIX)


@dataclass(frozen=True, slots=True)
class VMPort:
    """What a VM's NIC is given on the node network."""

    ip: str
    prefix_len: int
    gateway: str
    bridge: str

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix_len}"


class VMPorts:
    """Addresses for VM NICs out of the node network of ``config``."""

    def __init__(self, config: NetworkConfig, ipam: Ipam | None = None) -> None:
        self.config = config
        self.ipam = ipam or Ipam(config.pod_cidr, config.state_dir)

    def _port(self, ip: str) -> VMPort:
        return VMPort(ip=ip, prefix_len=self.config.network.prefixlen,
                      gateway=str(self.config.gateway), bridge=self.config.bridge)

    async def allocate(self, vm_id: str, index: int) -> VMPort:
        """The NIC's address, allocated on first use (NetworkError when the
        range is exhausted); the same address on every later call."""
        ip = await asyncio.to_thread(self.ipam.allocate, owner(vm_id, index))
        return self._port(str(ip))

    async def release(self, vm_id: str) -> list[str]:
        """Free every address of VM ``vm_id``; returns those freed (idempotent)."""
        def work() -> list[str]:
            prefix = f"{VM_OWNER_PREFIX}{vm_id}/"
            freed = []
            for name in self.ipam.allocations():
                if name.startswith(prefix):
                    ip = self.ipam.release(name)
                    if ip is not None:
                        freed.append(str(ip))
            return freed
        return await asyncio.to_thread(work)

    async def owners(self) -> dict[str, dict[int, VMPort]]:
        """vm id -> NIC index -> port, as the IPAM file says now."""
        found: dict[str, dict[int, VMPort]] = {}
        for name, ip in (await asyncio.to_thread(self.ipam.allocations)).items():
            if not is_vm_owner(name):
                continue
            vm_id, _, index = name[len(VM_OWNER_PREFIX):].rpartition("/")
            if vm_id and index.isdigit():
                found.setdefault(vm_id, {})[int(index)] = self._port(ip)
        return found
