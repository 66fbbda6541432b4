"""The node agent's VM runner end to end: a real in-process apiserver, the
agent as a task with the real pod network and the real QEMU driver, the
test guest (a kernel-boot disk image) booted under TCG or KVM with a
NoCloud seed, reached from the host over the node bridge. The tests bind
the VMs themselves (no VM controller runs). Root only; slow: each test
keeps the number of guest boots small."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from kubevisor.api.vmoperator import resolve
from kubevisor.client import Client, NotFoundError
from kubevisor.node.agent import ACCEL_ANNOTATION
from kubevisor.node.config import NodeConfig
from kubevisor.node.vms import VMManager, names
from kubevisor.node.vms.status import CLASS_SYNCED
from kubevisor.runtime.qemu import QemuDriver
from tests.client.live import Live
from tests.node.vms.host import (
    API,
    NODE,
    VMHost,
    agent,
    cond,
    create_bound,
    http_get,
    make_class,
    patch_spec,
    powered,
    publish_image,
    qemu_pids,
    vm_manifest,
    vm_where,
)

pytestmark = pytest.mark.slow


def _pid(host: VMHost, uid: str) -> int:
    pids = qemu_pids(str(host.vms_root / uid))
    assert len(pids) == 1, f"QEMU processes of {uid}: {pids}"
    return pids[0]


async def _events(api: Client, name: str) -> list[str]:
    items = (await api.list("v1", "Event", namespace="default"))["items"]
    return [e["reason"] for e in items if e["involvedObject"]["name"] == name]


async def test_vm_power_cycle(live: Live, api: Client, host: VMHost, guest_disk: str) -> None:
    await publish_image(api, host, guest_disk)
    await make_class(api, "small", cpus=1, memory="256Mi")
    await make_class(api, "bigger", cpus=2, memory="288Mi")
    async with agent(live.kubeconfig, host):
        vm = await create_bound(api, vm_manifest(
            "web", powerOffMode="Soft", bootstrap={"cloudInit": {
                "cloudConfig": {
                    "runcmd": ["echo made-by-runcmd > /www/note.txt"],
                    "write_files": [{"path": "/www/file.txt", "content": "from write_files\n"}]},
                "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest vm@test"]}}))
        uid = vm["metadata"]["uid"]

        # Powered on, the guest answers on its address from the pod network.
        vm = await vm_where(api, "web", powered("PoweredOn", ip=True), what="PoweredOn + IP")
        st = vm["status"]
        ip = st["network"]["primaryIP4"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(host.setup.pod_cidr)
        assert st["uniqueID"] == uid and st["biosUUID"] == names.bios_uuid(uid)
        assert st["hardware"]["cpu"]["total"] == 1
        assert st["hardware"]["memory"]["total"] == "256Mi"
        assert st["network"]["interfaces"][0]["ip"]["macAddr"] == names.mac(uid, 0)
        assert cond(vm, resolve.CREATED)["status"] == "True"
        vm = await vm_where(api, "web", lambda v: cond(v, resolve.READY).get("status") == "True",
                            what="Ready")
        assert (await asyncio.to_thread(http_get, ip)).strip() == "web"
        assert (await asyncio.to_thread(http_get, ip, "/note.txt")).strip() == "made-by-runcmd"
        assert (await asyncio.to_thread(http_get, ip, "/file.txt")) == "from write_files\n"
        assert host.ports().ipam.allocations()[f"vm:{uid}/0"] == ip
        node = await api.get("v1", "Node", NODE)
        assert node["metadata"]["annotations"][ACCEL_ANNOTATION] == host.caps.accel
        first_pid = _pid(host, uid)

        # Soft power-off through the guest's ACPI handling, then on again.
        await patch_spec(api, "web", {"powerState": "PoweredOff"})
        vm = await vm_where(api, "web", powered("PoweredOff"), what="PoweredOff")
        assert not qemu_pids(str(host.vms_root / uid))
        assert "primaryIP4" not in (vm["status"].get("network") or {})
        assert cond(vm, resolve.READY)["reason"] == "NotPoweredOn"
        await patch_spec(api, "web", {"powerState": "PoweredOn"})
        vm = await vm_where(api, "web", powered("PoweredOn", ip=True), what="PoweredOn again")
        assert vm["status"]["network"]["primaryIP4"] == ip  # the address stays the VM's
        assert _pid(host, uid) != first_pid

        # A class change applies at the next restart, and the condition says so.
        await vm_where(api, "web", lambda v: cond(v, resolve.READY).get("status") == "True")
        await patch_spec(api, "web", {"className": "bigger"})
        vm = await vm_where(api, "web", lambda v: cond(v, CLASS_SYNCED).get("reason") ==
                            "PendingRestart", what="PendingRestart")
        assert cond(vm, CLASS_SYNCED)["status"] == "False"
        assert "'bigger'" in cond(vm, CLASS_SYNCED)["message"]
        assert vm["status"]["hardware"]["cpu"]["total"] == 1

        # Suspend to a state file and resume: the guest goes on where it was,
        # with the hardware it was saved with (the new class still pending).
        await patch_spec(api, "web", {"powerState": "Suspended"})
        vm = await vm_where(api, "web", powered("Suspended"), what="Suspended")
        assert not qemu_pids(str(host.vms_root / uid))
        assert vm["status"]["hardware"]["cpu"]["total"] == 1
        assert cond(vm, CLASS_SYNCED)["reason"] == "PendingRestart"
        await patch_spec(api, "web", {"powerState": "PoweredOn"})
        vm = await vm_where(api, "web", powered("PoweredOn", ip=True), what="resumed")
        assert (await asyncio.to_thread(http_get, ip, "/note.txt")).strip() == "made-by-runcmd"
        vm = await vm_where(api, "web", lambda v: cond(v, CLASS_SYNCED).get("reason") ==
                            "PendingRestart", what="still PendingRestart")
        assert vm["status"]["hardware"]["cpu"]["total"] == 1
        pid = _pid(host, uid)

        # Restart via spec.nextRestartTime: a new QEMU with the new class.
        await patch_spec(api, "web", {"nextRestartTime": "now", "restartMode": "Hard"})
        vm = await vm_where(api, "web", lambda v: bool((v.get("status") or {}).get(
            "lastRestartTime")) and cond(v, CLASS_SYNCED).get("status") == "True",
            what="restarted")
        assert vm["status"]["lastRestartTime"] == vm["spec"]["nextRestartTime"]
        assert vm["status"]["hardware"]["cpu"]["total"] == 2
        assert vm["status"]["hardware"]["memory"]["total"] == "288Mi"
        assert _pid(host, uid) != pid
        await vm_where(api, "web", powered("PoweredOn", ip=True), what="up after restart")
        assert (await asyncio.to_thread(http_get, ip)).strip() == "web"

        reasons = await _events(api, "web")
        for reason in ("Created", "PoweredOn", "PoweredOff", "Suspended", "Resumed",
                       "Restarted"):
            assert reason in reasons, reasons

        await api.delete(API, "VirtualMachine", "web", namespace="default")
        await _gone(api, "web")
    assert host.leftovers(uid) == []


async def _gone(api: Client, name: str, timeout: float = 60.0) -> None:
    async def check() -> bool:
        try:
            await api.get(API, "VirtualMachine", name, namespace="default")
        except NotFoundError:
            return True
        return False
    for _ in range(int(timeout / 0.3)):
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"VM {name} still there after {timeout}s")


async def test_vm_readopted_orphans_removed(live: Live, api: Client, host: VMHost,
                                            guest_disk: str) -> None:
    await publish_image(api, host, guest_disk)
    await make_class(api, "small", cpus=1, memory="256Mi")
    await _bound_claim(api, "data", "pvc-test-data", "64Mi")
    await api.create({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "keep-ud", "namespace": "default"},
                      "stringData": {"user-data": "#cloud-config\nruncmd:\n"
                                                  "- echo from-raw > /www/raw.txt\n"}})
    async with agent(live.kubeconfig, host, crash=True):
        vm = await create_bound(api, vm_manifest(
            "keep", readinessProbe={"tcpSocket": {"port": 80}},
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            bootstrap={"cloudInit": {"rawCloudConfig": {"name": "keep-ud", "key": "user-data"},
                                     "sshAuthorizedKeys": ["ssh-ed25519 AAAAtest k@t"]}}))
        uid = vm["metadata"]["uid"]
        off = await create_bound(api, vm_manifest("gone", powerState="PoweredOff"))
        off_uid = off["metadata"]["uid"]
        vm = await vm_where(api, "keep", powered("PoweredOn", ip=True), what="PoweredOn + IP")
        await vm_where(api, "gone", powered("PoweredOff"), what="defined, off")
        ip = vm["status"]["network"]["primaryIP4"]
        pid = _pid(host, uid)
        # The raw cloud-config from the Secret ran; the PVC is a virtio disk.
        assert (await asyncio.to_thread(http_get, ip, "/raw.txt")).strip() == "from-raw"
        volume = host.data_dir / "volumes" / "pvc-test-data.qcow2"
        assert volume.is_file()
        assert str(volume).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert vm["status"]["volumes"] == [{"name": "data", "type": "Managed",
                                            "attached": True, "limit": "64Mi"}]
        vm = await vm_where(api, "keep", lambda v: cond(v, resolve.READY).get("status") ==
                            "True", what="Ready by its tcpSocket probe")
        assert (host.vms_root / off_uid / "disk.qcow2").exists()
        assert f"vm:{off_uid}/0" in host.ports().ipam.allocations()
    # The agent is gone (cancelled, nothing cleaned): QEMU runs on.
    assert _pid(host, uid) == pid
    # Meanwhile "gone" is deleted without the agent (its finalizer dropped by hand).
    off = await api.get(API, "VirtualMachine", "gone", namespace="default")
    off["metadata"]["finalizers"] = []
    await api.update(off)
    await api.delete(API, "VirtualMachine", "gone", namespace="default")
    await _gone(api, "gone")
    before = await api.get(API, "VirtualMachine", "keep", namespace="default")

    async with agent(live.kubeconfig, host):
        # The orphan's disk, seed and address go; the running VM is adopted as it runs.
        for _ in range(100):
            if not host.leftovers(off_uid):
                break
            await asyncio.sleep(0.3)
        assert host.leftovers(off_uid) == []
        vm = await vm_where(api, "keep", powered("PoweredOn", ip=True))
        assert _pid(host, uid) == pid
        assert vm["status"]["network"]["primaryIP4"] == ip
        assert cond(vm, resolve.POWER_SYNCED)["lastTransitionTime"] == \
            cond(before, resolve.POWER_SYNCED)["lastTransitionTime"]
        assert (await asyncio.to_thread(http_get, ip)).strip() == "keep"
        assert Path(f"/sys/class/net/{names.tap(uid, 0)}/master").resolve().name == \
            f"{host.setup.prefix}0"

        await api.delete(API, "VirtualMachine", "keep", namespace="default")
        await _gone(api, "keep")
        assert host.leftovers(uid) == []

    # The volume file lives as long as its PersistentVolume.
    manager = VMManager(api, NodeConfig(node_name=NODE, data_dir=host.data_dir),
                        driver=QemuDriver(host.vms_root, capabilities=host.caps),
                        ports=host.ports())
    assert await manager.collect_volumes() == []
    await api.delete("v1", "PersistentVolume", "pvc-test-data")
    assert await manager.collect_volumes() == [volume]
    assert not volume.exists()


async def _bound_claim(api: Client, claim: str, pv: str, size: str) -> None:
    """A PVC bound to a local PV (what the local-storage controller makes)."""
    await api.create({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                      "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                               "persistentVolumeReclaimPolicy": "Delete",
                               "csi": {"driver": "local.kubevisor.io", "volumeHandle": pv}}})
    await api.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": claim, "namespace": "default"},
                      "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv,
                               "storageClassName": "",
                               "resources": {"requests": {"storage": size}}}})
    await api.patch("v1", "PersistentVolumeClaim", claim, {"status": {"phase": "Bound"}},
                    namespace="default", subresource="status")
