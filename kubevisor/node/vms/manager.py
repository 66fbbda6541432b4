"""The VirtualMachines bound to this node: informers, one worker per VM uid.

:class:`VMManager` watches VirtualMachines with ``fieldSelector
status.nodeName=<node>`` (plus the classes and images they name, cluster
wide, so a sync reads them from memory) and keeps one
:class:`~kubevisor.node.vms.worker.VMWorker` task per VM uid, woken on
every change. At start it lists what the host already holds (VM
directories under the driver's root, ``vm:`` addresses in the IPAM file)
and, once the informer has synced, starts a worker for each of those too:
a VM still in the API is re-adopted as it runs (QEMU untouched), one that
is gone is removed with its addresses (orphans). Every few seconds it
relists the driver's VMs and wakes the workers whose QEMU changed (a
guest that powered itself off, say); every minute it deletes the volume
files of PersistentVolumes that are gone (:mod:`kubevisor.node.vmvolumes`).
Stopping (cancellation) leaves every
QEMU running. Started by :func:`kubevisor.node.agent.run_node`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from kubevisor.client import BadRequestError, Client, ClientError, Informer, NotFoundError
from kubevisor.node.config import NodeConfig
from kubevisor.node.vms import record
from kubevisor.node.vms.events import vm_events
from kubevisor.node.vms.prepare import API, Extractor
from kubevisor.node.vms.worker import VMWorker
from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.network.vmports import VMPorts
from kubevisor.runtime.qemu import QemuDriver

JSON = dict[str, Any]
log = logging.getLogger(__name__)
KINDS = ("VirtualMachineClass", "VirtualMachineImage", "ClusterVirtualMachineImage")


def _rv(obj: JSON | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or -1)
    except ValueError:
        return -1


def default_extractor() -> Extractor | None:
    try:
        from kubevisor.runtime.qemu import kernelboot
    except ImportError:
        return None
    return kernelboot.extract


class VMManager:
    def __init__(self, client: Client, config: NodeConfig, *, driver: QemuDriver,
                 ports: VMPorts, images_root: Path | None = None,
                 extract: Extractor | None = None, relist_seconds: float = 2.0,
                 soft_timeout: float = 60.0, collect_seconds: float = 60.0) -> None:
        self.client = client
        self.config = config
        self.driver = driver
        self.ports = ports
        self.data_dir = config.data_dir
        self.images_root = images_root or config.data_dir / "images" / "vm"
        self.extract = extract or default_extractor()
        self.relist_seconds = relist_seconds
        #: How long a Soft/TrySoft power-off or restart waits for the guest.
        self.soft_timeout = soft_timeout
        #: How often volume files of deleted PersistentVolumes are looked for.
        self.collect_seconds = collect_seconds
        self.events = vm_events(client, config.node_name)
        #: uid -> the newest VirtualMachine seen (absent: gone from the API).
        self.vms: dict[str, JSON] = {}
        self.workers: dict[str, VMWorker] = {}
        self.informer = Informer(client, API, "VirtualMachine",
                                 field_selector=f"status.nodeName={config.node_name}")
        self.informer.add_handler(self._on_vm)
        self.lookups = {kind: Informer(client, API, kind) for kind in KINDS}
        for inf in self.lookups.values():
            inf.add_handler(self._on_dependency)
        self._started = False
        self._seen: dict[str, tuple[str, int]] = {}

    # -- events ----------------------------------------------------------------

    def _on_vm(self, etype: str, obj: JSON, old: JSON | None) -> None:
        uid = (obj.get("metadata") or {}).get("uid")
        if not uid:
            return
        if (obj.get("status") or {}).get("nodeName") != self.config.node_name:
            # Not (or no longer) ours: seen only when watching without a field selector.
            if uid not in self.vms and uid not in self.workers:
                return
            etype = "DELETED"
        if etype == "DELETED":
            self.vms.pop(uid, None)
        else:
            cached = self.vms.get(uid)
            if cached is None or _rv(obj) >= _rv(cached) or _rv(obj) < 0:
                self.vms[uid] = obj
        if self._started:
            self.poke(uid)

    def _on_dependency(self, etype: str, obj: JSON, old: JSON | None) -> None:
        if self._started:
            for uid in list(self.vms):
                self.poke(uid)

    def vm_updated(self, vm: JSON) -> None:
        """A VM as a status write answered it: kept when newer than the cached one."""
        uid = vm["metadata"]["uid"]
        cached = self.vms.get(uid)
        if cached is not None and _rv(vm) > _rv(cached):
            self.vms[uid] = vm

    async def lookup(self, kind: str, name: str, namespace: str) -> JSON | None:
        """A class or image from the cache once it synced, else from the API."""
        inf = self.lookups[kind]
        if inf.synced.is_set():
            return inf.get(name, namespace)
        try:
            return await self.client.get(API, kind, name, namespace=namespace or None)
        except NotFoundError:
            return None

    def kernels_dir(self, digest: str) -> Path:
        from kubevisor.runtime.qemu import kernelboot

        return kernelboot.cache_dir(self.images_root, digest)

    # -- workers ---------------------------------------------------------------

    def poke(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is None or worker.task is None or worker.task.done():
            worker = VMWorker(self, uid)
            self.workers[uid] = worker
            worker.task = asyncio.get_running_loop().create_task(
                self._run_worker(worker), name=f"vm-{uid}")
        worker.wake.set()

    async def _run_worker(self, worker: VMWorker) -> None:
        try:
            await worker.run()
        finally:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]

    async def host_uids(self) -> set[str]:
        """VMs the host holds something of: a directory or an address."""
        dirs = {p.name for p in self.driver.root.iterdir()
                if p.is_dir() and not p.name.startswith(".")}
        return dirs | set(await self.ports.owners())

    async def relist(self) -> set[str]:
        """Read every VM of the driver; wake the workers of those whose
        QEMU changed (status or pid); returns their uids."""
        fresh = {s.id: (s.status, s.pid) for s in await self.driver.list()}
        changed = {uid for uid in {*fresh, *self._seen} if fresh.get(uid) != self._seen.get(uid)}
        self._seen = fresh
        if self._started:
            for uid in changed:
                self.poke(uid)
        return changed

    async def _relist_loop(self) -> None:
        while True:
            await asyncio.sleep(self.relist_seconds)
            try:
                await self.relist()
            except (RuntimeFailure, OSError) as exc:
                log.warning("node %s: relisting VMs failed: %s", self.config.node_name, exc)

    async def collect_volumes(self) -> list[Path]:
        """Delete the volume files of PersistentVolumes that are gone, except
        those a running VM of this host was started with."""
        try:
            from kubevisor.node import vmvolumes
        except ImportError:
            return []
        pvs = (await self.client.list("v1", "PersistentVolume")).get("items") or []
        live = {str(((pv.get("spec") or {}).get("csi") or {}).get("volumeHandle") or "")
                for pv in pvs}
        volumes_dir = self.data_dir / vmvolumes.VOLUMES_DIR
        for vm_dir in self.driver.root.iterdir():
            started = record.read(vm_dir).started_spec
            for disk in started.disks if started else ():
                path = Path(disk.path)
                if path.parent == volumes_dir and path.name.endswith(vmvolumes.SUFFIX):
                    live.add(path.name[: -len(vmvolumes.SUFFIX)])
        removed = await vmvolumes.collect_volumes(self.data_dir, live - {""})
        for path in removed:
            log.info("node %s: volume file %s removed (its PersistentVolume is gone)",
                     self.config.node_name, path)
        return removed

    async def _collect_loop(self) -> None:
        while True:
            try:
                await self.collect_volumes()
            except (ClientError, OSError) as exc:
                log.warning("node %s: collecting volume files failed: %s",
                            self.config.node_name, exc)
            await asyncio.sleep(self.collect_seconds)

    async def _check_selector(self) -> None:
        """Watch unfiltered (keeping only this node's VMs) when the API
        cannot select VMs by status.nodeName."""
        try:
            await self.client.list(API, "VirtualMachine", limit=1,
                                   field_selector=f"status.nodeName={self.config.node_name}")
        except BadRequestError as exc:
            log.warning("node %s: the API cannot select VirtualMachines by status.nodeName "
                        "(%s); watching all of them", self.config.node_name, exc)
            self.informer = Informer(self.client, API, "VirtualMachine")
            self.informer.add_handler(self._on_vm)

    async def run(self) -> None:
        """Re-adopt, then follow the API and the host until cancelled."""
        await self._check_selector()
        await self.relist()
        tasks = [asyncio.create_task(self.informer.run(), name="vm-informer"),
                 *(asyncio.create_task(inf.run(), name=f"vm-{kind}")
                   for kind, inf in self.lookups.items())]
        relister: asyncio.Task[None] | None = None
        try:
            await self.informer.synced.wait()
            self._started = True
            on_host = await self.host_uids()
            for uid in {*self.vms, *on_host}:
                self.poke(uid)
            log.info("node %s: %d VMs bound, %d found on the host", self.config.node_name,
                     len(self.vms), len(on_host))
            relister = asyncio.create_task(self._relist_loop(), name="vm-relist")
            tasks.append(asyncio.create_task(self._collect_loop(), name="vm-volume-collector"))
            await asyncio.gather(relister, *tasks)
        finally:
            workers = [w.task for w in self.workers.values() if w.task is not None]
            every = [t for t in (*tasks, relister, *workers) if t is not None]
            for t in every:
                t.cancel()
            for t in every:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
