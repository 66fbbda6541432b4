"""One VM's worker: reads, plans, applies, reports (the shell of
:func:`kubevisor.node.vms.plan.plan`).

:class:`VMWorker` runs as one task per VM uid, woken by the manager (the
VM, its class or image changed; the driver's relist saw its QEMU change)
or by its own requeue (waiting for the guest's address, readiness). Each
sync reads the VM from the informer, the driver's state and the agent's
record from the host, prepares the host spec (:mod:`.prepare`), plans,
applies the power operations through the driver (posting events), and
writes the node's part of the status (:mod:`.status`) when it changed:
get, modify, update through the status subresource, again on a 409.

A VM being deleted, or gone from the API (an orphan found on the host),
is torn down: QEMU stopped, its directory (disks, seed, sockets) and taps
removed, its addresses released, and the finalizer
``vmoperator.kubevisor.io/host-cleanup`` removed last.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevisor.api.vmoperator import resolve
from kubevisor.client import ConflictError, NotFoundError
from kubevisor.node.clock import parse
from kubevisor.node.syncloop import sync_until_finished
from kubevisor.node.vms import names, reach, record
from kubevisor.node.vms.plan import ON, Action, plan, power_state, restart_requested
from kubevisor.node.vms.prepare import Prepared, PrepareError, materialize, prepare
from kubevisor.node.vms.status import NicStatus, Observation, Problem, node_status
from kubevisor.node.worker import normalized
from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.qemu import VMSpec, VMState

if TYPE_CHECKING:
    from kubevisor.node.vms.manager import VMManager

JSON = dict[str, Any]
log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0
IP_POLL_SECONDS = 1.0
READY_PERIOD_SECONDS = 10.0

_EVENTS = {
    "start": ("PoweredOn", "PowerOnFailed", "powered on"),
    "resume": ("Resumed", "ResumeFailed", "resumed"),
    "power_off": ("PoweredOff", "PowerOffFailed", "powered off ({mode})"),
    "discard": ("PoweredOff", "PowerOffFailed", "powered off (saved state discarded)"),
    "suspend": ("Suspended", "SuspendFailed", "suspended"),
    "reboot": ("Restarted", "RestartFailed", "restarted ({mode})"),
    "define": ("Created", "CreateFailed", "defined on node {node}"),
}


def _describe(cpus: int, memory: int) -> str:
    mem = f"{memory >> 30}Gi" if memory % (1 << 30) == 0 else f"{memory >> 20}Mi"
    return f"{cpus} CPU{'s' if cpus != 1 else ''}, {mem}"


def pending_message(vm: JSON, running: VMSpec, desired: VMSpec) -> str:
    name = resolve.class_name(vm)
    if (running.cpus, running.memory_bytes) != (desired.cpus, desired.memory_bytes):
        return (f"class {name!r} ({_describe(desired.cpus, desired.memory_bytes)}) applies at "
                f"the next restart; the VM runs with "
                f"{_describe(running.cpus, running.memory_bytes)}")
    return "the VM's new definition (disks, volumes or firmware) applies at the next restart"


class VMWorker:
    def __init__(self, manager: VMManager, uid: str) -> None:
        self.m = manager
        self.uid = uid
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def vm_dir(self) -> Path:
        return self.m.driver.root / self.uid

    async def run(self) -> None:
        await sync_until_finished(self.wake, self.sync, what=f"VM {self.uid}",
                                  retry=RETRY_SECONDS)

    # -- one sync --------------------------------------------------------------

    async def sync(self) -> tuple[float | None, bool]:
        """(requeue after, finished)."""
        vm = self.m.vms.get(self.uid)
        if vm is None or (vm.get("metadata") or {}).get("deletionTimestamp"):
            await self.teardown(vm)
            return None, True
        rec = record.read(self.vm_dir)
        state = await self.m.driver.state(self.uid)
        prepared: Prepared | None = None
        problem: Problem | None = None
        try:
            prepared = await prepare(self.m, vm, rec)
            await materialize(self.m, vm, prepared, rec,
                              stopped=state is None or state.status == "shutdown")
        except PrepareError as exc:
            problem = Problem(exc.reason, exc.message)
            prepared = None
        desired = record.spec_hash(prepared.spec) if prepared else None
        if prepared is not None and rec.started is None and rec.defined == desired and \
                state is not None and state.status in ("running", "paused"):
            rec.started = record.started(prepared.spec)  # started by an agent that died before noting it
        if self.vm_dir.is_dir():
            record.write(self.vm_dir, rec)
        actions = plan(vm, state.status if state else None, desired=desired,
                       defined=rec.defined, last_restart=rec.last_restart)
        power_problem: Problem | None = None
        for action in actions:
            try:
                await self.apply(action, vm, prepared, rec, state)
            except (RuntimeFailure, OSError) as exc:
                _, failed, _ = _EVENTS.get(action.kind, ("", "Failed", ""))
                power_problem = Problem(failed, f"{action.kind.replace('_', ' ')}: {exc}")
                await self.m.events.emit(vm, "Warning", failed, str(exc))
                break
            finally:
                if self.vm_dir.is_dir():
                    record.write(self.vm_dir, rec)
        state = await self.m.driver.state(self.uid)
        obs = await self.observe(vm, state, prepared, rec)
        obs.prepare = problem
        obs.power_problem = power_problem
        await self.write_status(vm, obs)
        if problem or power_problem:
            return RETRY_SECONDS, False
        if obs.power == ON:
            if not obs.ip_up and obs.nics:
                return IP_POLL_SECONDS, False
            probe = (vm.get("spec") or {}).get("readinessProbe") or {}
            if obs.probe is False:
                return IP_POLL_SECONDS, False
            return float(probe.get("periodSeconds") or READY_PERIOD_SECONDS), False
        return None, False

    async def apply(self, action: Action, vm: JSON, prepared: Prepared | None,
                    rec: record.Record, state: VMState | None) -> None:
        d = self.m.driver
        kind = action.kind
        timeout = self.m.soft_timeout
        if kind == "define":
            assert prepared is not None
            await d.create(prepared.spec)
            rec.defined = record.spec_hash(prepared.spec)
            if state is None:
                await self._event(vm, kind, action)
            return
        if kind == "start":
            assert prepared is not None
            await d.start(self.uid)
            rec.started = record.started(prepared.spec)
        elif kind == "resume":
            await self._restore_started(rec)
            await d.resume(self.uid)
        elif kind == "power_off":
            await d.power_off(self.uid, mode=action.mode, timeout=timeout)
            rec.started = None
        elif kind == "discard":
            if state is not None and state.state_file:
                Path(state.state_file).unlink(missing_ok=True)
            rec.started = None
        elif kind == "suspend":
            await self._restore_started(rec)
            await d.suspend(self.uid)
        elif kind == "reboot":
            wanted = restart_requested(vm, rec.last_restart)
            await d.reboot(self.uid, mode=action.mode, timeout=timeout)
            if prepared is not None and rec.defined == record.spec_hash(prepared.spec):
                rec.started = record.started(prepared.spec)
            rec.last_restart = wanted
        elif kind == "mark_restarted":
            rec.last_restart = restart_requested(vm, rec.last_restart)
            return
        await self._event(vm, kind, action)

    async def _restore_started(self, rec: record.Record) -> None:
        """Define the VM with the spec its QEMU runs with (a suspend saves,
        and a resume restores, exactly that hardware)."""
        running = rec.started_spec
        if running is not None and rec.defined != rec.started_hash:
            await self.m.driver.create(running)
            rec.defined = rec.started_hash

    async def _event(self, vm: JSON, kind: str, action: Action) -> None:
        reason, _, text = _EVENTS[kind]
        message = "the VM was " + text.format(mode=action.mode, node=self.m.config.node_name)
        await self.m.events.emit(vm, "Normal", reason, message)

    # -- observing -------------------------------------------------------------

    async def observe(self, vm: JSON, state: VMState | None, prepared: Prepared | None,
                      rec: record.Record) -> Observation:
        power = power_state(state.status if state else None)
        running = rec.started_spec if state is not None and state.status in (
            "running", "paused", "suspended") else None
        shown = running or (prepared.spec if prepared else None)
        spec = vm.get("spec") or {}
        nics = prepared.nics if prepared else await self._known_nics()
        obs = Observation(
            power=power, node=self.m.config.node_name,
            bios_uuid=str(spec.get("biosUUID") or names.bios_uuid(self.uid)),
            instance_uuid=str(spec.get("instanceUUID") or names.instance_uuid(self.uid)),
            cpus=shown.cpus if shown else 0, memory_bytes=shown.memory_bytes if shown else 0,
            nics=nics, hostname=str((spec.get("network") or {}).get("hostName")
                                    or vm["metadata"].get("name") or ""),
            volumes=prepared.volumes if prepared else [],
            last_restart=self._restart_stamp(rec))
        if running is not None and prepared is not None and \
                record.spec_hash(running) != record.spec_hash(prepared.spec):
            obs.pending_restart = pending_message(vm, running, prepared.spec)
        if power == ON and nics:
            ip = nics[0].cidr.split("/")[0]
            probe = spec.get("readinessProbe") or {}
            port = (probe.get("tcpSocket") or {}).get("port")
            obs.ip_up = await reach.answers(ip, port if isinstance(port, int) else reach.DEFAULT_PORT)
            if obs.ip_up and isinstance(port, int):
                host = (probe.get("tcpSocket") or {}).get("host") or ip
                obs.probe = await reach.accepts(host, port,
                                                timeout=float(probe.get("timeoutSeconds") or 1))
        return obs

    def _restart_stamp(self, rec: record.Record) -> str:
        if not rec.last_restart:
            return ""
        return rec.last_restart if parse(rec.last_restart) is not None else ""

    async def _known_nics(self) -> list[NicStatus]:
        ports = (await self.m.ports.owners()).get(self.uid) or {}
        return [NicStatus(name=f"eth{i}", mac=names.mac(self.uid, i), cidr=ports[i].cidr)
                for i in sorted(ports)]

    # -- status ----------------------------------------------------------------

    async def write_status(self, vm: JSON, obs: Observation) -> None:
        current = vm
        for _ in range(5):
            new = node_status(current.get("status"), current, obs)
            if normalized(new) == normalized(current.get("status") or {}):
                return
            body = {**current, "status": new}
            try:
                updated = await self.m.client.update_status(body)
            except ConflictError:
                try:
                    current = await self.m.client.get(
                        current["apiVersion"], current["kind"], current["metadata"]["name"],
                        namespace=current["metadata"].get("namespace"))
                except NotFoundError:
                    return
                continue
            except NotFoundError:
                return
            self.m.vm_updated(updated)
            return
        log.warning("VM %s: status not written after 5 conflicts", self.uid)

    # -- teardown --------------------------------------------------------------

    async def teardown(self, vm: JSON | None) -> None:
        """Leave nothing of the VM on the host, then drop the finalizer."""
        existed = self.vm_dir.exists()
        await self.m.driver.delete(self.uid)
        if self.vm_dir.exists():
            await asyncio.to_thread(shutil.rmtree, self.vm_dir, True)
        freed = await self.m.ports.release(self.uid)
        self.m.events.forget(self.uid)
        if vm is None:
            if existed or freed:
                log.info("VM %s: gone from the API, removed from the host (addresses %s)",
                         self.uid, ", ".join(freed) or "none")
            return
        await self._drop_finalizer(vm)

    async def _drop_finalizer(self, vm: JSON) -> None:
        current = vm
        md = vm["metadata"]
        for _ in range(10):
            finalizers = list((current.get("metadata") or {}).get("finalizers") or ())
            if resolve.FINALIZER not in finalizers:
                return
            body = {**current, "metadata": {**current["metadata"], "finalizers": [
                f for f in finalizers if f != resolve.FINALIZER]}}
            try:
                await self.m.client.update(body)
                return
            except ConflictError:
                pass
            except NotFoundError:
                return
            try:
                current = await self.m.client.get(vm["apiVersion"], vm["kind"], md["name"],
                                                  namespace=md.get("namespace"))
            except NotFoundError:
                return
        raise RuntimeError(f"VM {self.uid}: the finalizer could not be removed (conflicts)")
