"""Helpers for the VM runner's end-to-end tests: a host with the real
drivers (pod network under a random prefix, the QEMU driver with the
session's probed capabilities), the test guest imported as a
ClusterVirtualMachineImage, VM objects bound to the node by the test
itself (finalizer at create, status.nodeName through the status
subresource), the agent as a task, and a check that nothing of a VM is
left on the host."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from kubevisor.api.vmoperator import resolve
from kubevisor.client import Client, ConflictError
from kubevisor.node.agent import Drivers, build_drivers, run_node
from kubevisor.node.vms import names
from kubevisor.runtime.network.vmports import VMPorts
from kubevisor.runtime.qemu import QemuDriver, VMCapabilities, library
from tests.node.e2e import HostSetup, new_setup

API = "vmoperator.vmware.com/v1alpha6"
NODE = "node-vm"
IMAGE = "guest"


def qemu_pids(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (proc / "cmdline").read_bytes() and \
                    (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z" and \
                    (proc / "comm").read_text().startswith("qemu-system"):
                found.append(int(proc.name))
    return found


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


@dataclasses.dataclass
class VMHost:
    setup: HostSetup
    caps: VMCapabilities

    @property
    def data_dir(self) -> Path:
        return self.setup.data_dir

    @property
    def vms_root(self) -> Path:
        return self.data_dir / "vms"

    def ports(self) -> VMPorts:
        return VMPorts(self.setup.network_config())

    async def drivers(self) -> Drivers:
        base = await build_drivers(self.data_dir, pod_cidr=self.setup.pod_cidr,
                                   network_prefix=self.setup.prefix,
                                   cgroup_parent=f"/{self.setup.prefix}", vm_driver=False)
        return dataclasses.replace(base, vms=QemuDriver(self.vms_root, capabilities=self.caps),
                                   vm_ports=self.ports())

    def leftovers(self, uid: str) -> list[str]:
        """What the host still holds of VM ``uid``."""
        left = []
        if (self.vms_root / uid).exists():
            left.append(f"directory {self.vms_root / uid}")
        pids = qemu_pids(str(self.vms_root / uid))
        if pids:
            left.append(f"QEMU {pids}")
        if link_exists(names.tap(uid, 0)):
            left.append(f"tap {names.tap(uid, 0)}")
        owners = self.ports().ipam.allocations()
        left += [f"address {ip} of {o}" for o, ip in owners.items() if o.startswith(f"vm:{uid}/")]
        return left

    async def cleanup(self) -> None:
        for pid in qemu_pids(str(self.vms_root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for tap in Path("/sys/class/net").iterdir():
            master = tap / "master"
            if (tap / "tun_flags").exists() and master.exists() and \
                    master.resolve().name == f"{self.setup.prefix}0":
                await asyncio.create_subprocess_exec("ip", "link", "del", tap.name)
        await self.setup.cleanup()
        shutil.rmtree(self.setup.root.parent, ignore_errors=True)


@contextlib.asynccontextmanager
async def vm_host(caps: VMCapabilities) -> AsyncIterator[VMHost]:
    # A short root: QEMU's unix sockets live in <data-dir>/vms/<uid>/.
    root = Path(tempfile.mkdtemp(prefix="kvvm", dir="/tmp"))
    host = VMHost(setup=new_setup(root / "h"), caps=caps)
    try:
        yield host
    finally:
        await host.cleanup()


@contextlib.asynccontextmanager
async def agent(kubeconfig: Path, host: VMHost, *, crash: bool = False) -> AsyncIterator[None]:
    """run_node as a task. On exit the task is cancelled: nothing is cleaned
    up either way (as after a SIGKILL, QEMU keeps running); ``crash`` only
    skips the orderly stop signal."""
    stop = asyncio.Event()
    drivers = await host.drivers()
    task = asyncio.create_task(run_node(
        kubeconfig=kubeconfig, data_dir=host.data_dir, node_name=NODE, stop=stop,
        pod_cidr=host.setup.pod_cidr, node_ip="127.0.0.1", drivers=drivers))
    try:
        yield
    finally:
        if crash:
            task.cancel()
        else:
            stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        closer = getattr(drivers.images, "aclose", None)
        if closer is not None:
            await closer()


async def publish_image(api: Client, host: VMHost, disk: str) -> str:
    """Import ``disk`` into the node's library; a ClusterVirtualMachineImage naming it."""
    stored = await asyncio.to_thread(library.import_file, Path(disk),
                                     host.data_dir / "images" / "vm")
    obj = await api.create({"apiVersion": API, "kind": "ClusterVirtualMachineImage",
                            "metadata": {"name": IMAGE, "annotations": {
                                library.DIGEST_ANNOTATION: stored.digest}},
                            "spec": {}})
    obj["status"] = {"type": "raw", "firmware": "bios",
                     "disks": [{"name": "disk-0", "limit": str(stored.size)}]}
    await api.update_status(obj)
    return stored.digest


async def make_class(api: Client, name: str, *, cpus: int, memory: str) -> None:
    await api.create({"apiVersion": API, "kind": "VirtualMachineClass",
                      "metadata": {"name": name, "namespace": "default"},
                      "spec": {"hardware": {"cpus": cpus, "memory": memory}}})


def vm_manifest(name: str, *, class_name: str = "small", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default",
                         "finalizers": [resolve.FINALIZER]},
            "spec": {"className": class_name, "imageName": IMAGE, **spec}}


async def create_bound(api: Client, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the VM and bind it to the test node (what the VM controller does)."""
    vm = await api.create(manifest)
    return await api.patch(API, "VirtualMachine", vm["metadata"]["name"],
                           {"status": {"nodeName": NODE}}, namespace="default",
                           subresource="status")


async def patch_spec(api: Client, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    for _ in range(10):
        try:
            return await api.patch(API, "VirtualMachine", name, {"spec": spec},
                                   namespace="default")
        except ConflictError:
            await asyncio.sleep(0.1)
    raise AssertionError("patch kept conflicting")


def cond(vm: dict[str, Any], type_: str) -> dict[str, Any]:
    return resolve.condition(vm, type_) or {}


async def vm_where(api: Client, name: str, pred: Callable[[dict[str, Any]], bool], *,
                   timeout: float = 120.0, what: str = "") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = await api.get(API, "VirtualMachine", name, namespace="default")
        if pred(last):
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"VM {name} never got {what or 'there'}; status: {last.get('status')}")


def powered(state: str, *, ip: bool = False) -> Callable[[dict[str, Any]], bool]:
    def check(vm: dict[str, Any]) -> bool:
        st = vm.get("status") or {}
        if st.get("powerState") != state:
            return False
        if cond(vm, resolve.POWER_SYNCED).get("status") != "True":
            return False
        return not ip or bool((st.get("network") or {}).get("primaryIP4"))
    return check


def http_get(ip: str, path: str = "/", *, timeout: float = 30.0) -> str:
    """The body of GET ``path`` from the guest's httpd (blocking, retried)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, 80), timeout=5) as sock:
                sock.sendall(f"GET {path} HTTP/1.0\r\nHost: guest\r\n\r\n".encode())
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
            if " 200 " in head.split("\r\n", 1)[0]:
                return body
            last = AssertionError(head.split("\r\n", 1)[0])
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"no HTTP 200 for {path} from {ip}:80: {last}")
