"""Facts about this host that a Node reports: CPUs, memory, disk, identity,
OS, addresses, and the pressure signals behind the node conditions.

:func:`read_host` gathers them once (and again for each status check);
the parsers (:func:`parse_meminfo`, :func:`parse_os_release`) are pure.
Called by :mod:`kubevisor.node.nodestatus` (through its caller,
:mod:`kubevisor.node.registration`).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str
    internal_ip: str
    cpus: int
    memory_bytes: int
    memory_available_bytes: int
    storage_bytes: int
    storage_available_bytes: int
    inodes_free_fraction: float
    pids_max: int
    pids_running: int
    machine_id: str
    system_uuid: str
    boot_id: str
    kernel_version: str
    os_image: str
    architecture: str


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per key."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        out[key.strip()] = int(parts[0]) * scale
    return out


def parse_os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def architecture(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return _ARCH.get(machine, machine)


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def default_route_ip() -> str | None:
    """The IPv4 address of the interface holding the default route (a
    kernel table lookup through ``ip -j``; no packet is sent)."""
    try:
        routes = json.loads(subprocess.run(
            ["ip", "-j", "-4", "route", "show", "default"], capture_output=True,
            check=True, timeout=5).stdout or b"[]")
        if not routes:
            return None
        dev = routes[0].get("dev")
        addrs = json.loads(subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "dev", dev], capture_output=True,
            check=True, timeout=5).stdout or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    for link in addrs:
        for info in link.get("addr_info") or []:
            if info.get("family") == "inet" and info.get("local"):
                return str(info["local"])
    return None


def read_host(data_dir: Path, *, node_ip: str | None = None) -> HostFacts:
    """Gather the facts now (cheap: a few /proc reads and one statvfs)."""
    mem = parse_meminfo(_read("/proc/meminfo"))
    data_dir.mkdir(parents=True, exist_ok=True)
    vfs = os.statvfs(data_dir)
    release = parse_os_release(_read("/etc/os-release") or _read("/usr/lib/os-release"))
    machine_id = _read("/etc/machine-id")
    loadavg = _read("/proc/loadavg").split()
    running = int(loadavg[3].split("/")[1]) if len(loadavg) > 3 and "/" in loadavg[3] else 0
    return HostFacts(
        hostname=socket.gethostname(),
        internal_ip=node_ip or default_route_ip() or "127.0.0.1",
        cpus=os.cpu_count() or 1,
        memory_bytes=mem.get("MemTotal", 0),
        memory_available_bytes=mem.get("MemAvailable", mem.get("MemFree", 0)),
        storage_bytes=vfs.f_blocks * vfs.f_frsize,
        storage_available_bytes=vfs.f_bavail * vfs.f_frsize,
        inodes_free_fraction=(vfs.f_favail / vfs.f_files) if vfs.f_files else 1.0,
        pids_max=int(_read("/proc/sys/kernel/pid_max", "32768") or 32768),
        pids_running=running,
        machine_id=machine_id,
        system_uuid=_read("/sys/class/dmi/id/product_uuid").lower() or machine_id,
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        kernel_version=platform.release(),
        os_image=release.get("PRETTY_NAME", "Linux"),
        architecture=architecture(),
    )
