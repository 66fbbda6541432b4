"""The QEMU driver: :class:`QemuDriver` implements
:class:`~kubevisor.runtime.qemu.types.VMRuntime` for the node agent.

Each VM is a directory under the driver's state root (see
:mod:`~kubevisor.runtime.qemu.paths`) and, while it runs, one daemonized
QEMU process that outlives the agent, driven over QMP. Nothing is held
in memory: every call reads the directory and the process afresh, so a
new driver on the same root re-adopts what an old one started.

Failure rule: a start or resume that fails kills the QEMU it started and
removes its sockets and pid file (a suspended VM keeps its state file to
retry); a suspend that fails leaves the VM running. ``delete`` is
idempotent and leaves nothing: no process, tap, socket or file of the
VM's directory. Disks and an outside console log belong to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from kubevisor.runtime.qemu import process, qmp, tap
from kubevisor.runtime.qemu.command import build_argv
from kubevisor.runtime.qemu.errors import VMError, VMNotFoundError, VMStateError
from kubevisor.runtime.qemu.paths import VMPaths
from kubevisor.runtime.qemu.probe import DEFAULT_CACHE, OVMF_CODE, OVMF_VARS, QEMU, probe
from kubevisor.runtime.qemu.store import read_json, spec_from_json, spec_to_json, write_json
from kubevisor.runtime.qemu.types import PowerOpMode, VMCapabilities, VMSpec, VMState

_QMP_TIMEOUT = 5.0


class QemuDriver:
    """VMs under ``state_root`` on this host, run with ``capabilities.accel``."""

    def __init__(self, state_root: str | os.PathLike[str], *, capabilities: VMCapabilities,
                 qemu: str = QEMU, ovmf_code: str = OVMF_CODE, ovmf_vars: str = OVMF_VARS,
                 start_timeout: float = 30.0, suspend_timeout: float = 120.0) -> None:
        self.root = Path(state_root).resolve()
        self.capabilities = capabilities
        self._qemu = qemu
        self._ovmf_code = ovmf_code
        self._ovmf_vars = ovmf_vars
        self._start_timeout = start_timeout
        self._suspend_timeout = suspend_timeout
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    async def open(cls, state_root: str | os.PathLike[str], *, probe_timeout: float = 10.0,
                   probe_cache: str | None = DEFAULT_CACHE, force_accel: str | None = None,
                   probe_kernel: str | None = None, qemu: str = QEMU) -> QemuDriver:
        """Probe the host (cached per boot) and return a driver. Give
        ``probe_kernel`` (e.g. the test guest's kernel) where the host has
        no readable ``/boot/vmlinuz-*``: KVM is trusted only after a Linux
        guest ran under it."""
        assert force_accel in (None, "kvm", "tcg"), f"unknown accelerator {force_accel}"
        caps = await probe(qemu=qemu, timeout=probe_timeout, cache_path=probe_cache,
                           force=force_accel, kernel=probe_kernel)  # type: ignore[arg-type]
        return cls(state_root, capabilities=caps, qemu=qemu)

    # ------------------------------------------------------------ helpers

    def _paths(self, vm_id: str) -> VMPaths:
        assert vm_id and "/" not in vm_id and not vm_id.startswith("."), f"bad VM id {vm_id!r}"
        return VMPaths(self.root / vm_id)

    def _spec(self, paths: VMPaths) -> VMSpec:
        data = read_json(paths.spec)
        if data is None:
            raise VMNotFoundError(f"no VM {paths.dir.name} on this host")
        return spec_from_json(data)

    async def _reap(self, paths: VMPaths) -> None:
        """Forget a QEMU that is gone: its pid file, sockets and run record."""
        for stale in (paths.pidfile, paths.qmp, paths.console, paths.run_info):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def _state_of(self, paths: VMPaths, spec: VMSpec, status: str, pid: int = 0) -> VMState:
        run = (read_json(paths.run_info) or {}) if pid else {}
        return VMState(
            id=spec.id, status=status, pid=pid,  # type: ignore[arg-type]
            accel=run.get("accel") if pid else None,
            qmp_socket=str(paths.qmp) if pid else "",
            console_socket=str(paths.console) if pid else "",
            console_log=spec.console_log or str(paths.console_log),
            state_file=str(paths.state_file) if paths.state_file.exists() else "",
            started_at=process.started_at(pid) if pid else None,
            labels=dict(spec.labels))

    async def _observe(self, paths: VMPaths) -> VMState:
        spec = self._spec(paths)
        pid = process.find(paths)
        if pid is None:
            return self._state_of(paths, spec, "suspended" if paths.state_file.exists() else "shutdown")
        try:
            async with qmp.session(str(paths.qmp), timeout=_QMP_TIMEOUT) as q:
                run_state = await q.status()
        except VMError:
            run_state = "running"  # alive but QMP busy (one client at a time): say what we know
        if process.find(paths) is None:
            return await self._observe(paths)
        return self._state_of(paths, spec, "running" if run_state == "running" else "paused", pid)

    async def _launch(self, paths: VMPaths, spec: VMSpec, *, incoming: str | None) -> int:
        """Start QEMU for ``spec`` (daemonized), put its taps on their bridges."""
        await self._reap(paths)
        for nic in spec.interfaces:
            if nic.tap:
                await tap.remove(nic.tap)
        paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = build_argv(spec, paths, accel=self.capabilities.accel, incoming=incoming,
                          qemu=self._qemu, ovmf_code=self._ovmf_code,
                          vhost_net=os.path.exists("/dev/vhost-net"))
        # QEMU's errors go to a file, not a pipe: the daemonized QEMU may keep
        # a copy of its stderr open for as long as it runs, so a pipe would
        # never reach end of file. The launching process exits once the VM is
        # up (or has failed), which is what is waited for.
        errors = tempfile.TemporaryFile(dir=paths.dir)
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=errors, start_new_session=True)
            except OSError as exc:
                raise VMError(f"cannot run {self._qemu}: {exc}") from exc
            try:
                await asyncio.wait_for(proc.wait(), self._start_timeout)
            except TimeoutError as exc:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                await self._kill(paths)
                raise VMError(f"QEMU for {spec.id} did not start within "
                              f"{self._start_timeout:g}s") from exc
            pid = process.find(paths)
            if proc.returncode != 0 or pid is None:
                await self._kill(paths)
                errors.seek(0)
                message = " ".join(errors.read(64 * 1024).decode(errors="replace").split())
                raise VMError(f"QEMU for {spec.id} failed to start: {message or proc.returncode}")
        finally:
            errors.close()
        write_json(paths.run_info, {"accel": self.capabilities.accel, "argv": argv})
        try:
            for nic in spec.interfaces:
                if nic.tap:
                    await tap.attach(nic.tap, nic.bridge)
        except BaseException:
            await self._kill(paths)
            raise
        return pid

    async def _kill(self, paths: VMPaths) -> None:
        pid = process.find(paths)
        if pid is not None:
            await process.kill(pid)
        await self._reap(paths)

    async def _hard_off(self, paths: VMPaths, pid: int) -> None:
        """QMP quit (QEMU flushes its disks), SIGKILL if that does not end it."""
        with contextlib.suppress(VMError):
            async with qmp.session(str(paths.qmp), timeout=2.0) as q:
                await q.quit()
        if not await process.wait_gone(pid, timeout=5.0):
            await process.kill(pid)
        await self._reap(paths)

    # ----------------------------------------------------------- contract

    async def create(self, spec: VMSpec) -> VMState:
        paths = self._paths(spec.id)
        for nic in spec.interfaces:
            assert len(nic.tap) <= 15, f"tap name {nic.tap!r} is longer than 15 characters"
        fresh = not paths.dir.exists()
        try:
            paths.dir.mkdir(parents=True, exist_ok=True)
            if spec.firmware == "uefi" and not paths.uefi_vars.exists():
                tmp = paths.uefi_vars.with_name(".vars.tmp")
                shutil.copyfile(self._ovmf_vars, tmp)
                os.replace(tmp, paths.uefi_vars)
            write_json(paths.spec, spec_to_json(spec))
        except OSError as exc:
            if fresh:
                shutil.rmtree(paths.dir, ignore_errors=True)
            raise VMError(f"cannot define VM {spec.id}: {exc}") from exc
        return await self._observe(paths)

    async def state(self, vm_id: str) -> VMState | None:
        paths = self._paths(vm_id)
        if not paths.spec.exists():
            return None
        try:
            return await self._observe(paths)
        except VMNotFoundError:
            return None

    async def list(self) -> list[VMState]:
        found = []
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.name.startswith(".") and (entry / "spec.json").exists():
                state = await self.state(entry.name)
                if state is not None:
                    found.append(state)
        return found

    async def start(self, vm_id: str) -> VMState:
        paths = self._paths(vm_id)
        spec = self._spec(paths)
        if process.find(paths) is not None:
            return await self._observe(paths)
        if paths.state_file.exists():
            return await self.resume(vm_id)
        await self._launch(paths, spec, incoming=None)
        return await self._observe(paths)

    async def power_off(self, vm_id: str, *, mode: PowerOpMode = "hard",
                        timeout: float = 60.0) -> VMState:
        """Hard: QEMU quits now. Soft: the ACPI power button, then wait up to
        ``timeout`` for the guest to power off (VMStateError if it does not).
        TrySoft: soft, then hard after the timeout."""
        paths = self._paths(vm_id)
        self._spec(paths)
        pid = process.find(paths)
        if pid is None:
            await self._reap(paths)
            return await self._observe(paths)
        if mode in ("soft", "trysoft"):
            async with qmp.session(str(paths.qmp), timeout=_QMP_TIMEOUT) as q:
                if await q.status() == "paused":
                    await q.cont()
                await q.powerdown()
            if await process.wait_gone(pid, timeout=timeout):
                await self._reap(paths)
                return await self._observe(paths)
            if mode == "soft":
                raise VMStateError(f"VM {vm_id} did not power off within {timeout:g}s of the ACPI power button")
        await self._hard_off(paths, pid)
        return await self._observe(paths)

    async def reboot(self, vm_id: str, *, mode: PowerOpMode = "hard",
                     timeout: float = 60.0) -> VMState:
        """Power off (``mode`` as for :meth:`power_off`) and start again with
        the current definition, so a redefined spec applies."""
        await self.power_off(vm_id, mode=mode, timeout=timeout)
        return await self.start(vm_id)

    async def pause(self, vm_id: str) -> VMState:
        paths = self._paths(vm_id)
        async with qmp.session(str(self._running(paths)), timeout=_QMP_TIMEOUT) as q:
            await q.stop()
        return await self._observe(paths)

    async def unpause(self, vm_id: str) -> VMState:
        paths = self._paths(vm_id)
        async with qmp.session(str(self._running(paths)), timeout=_QMP_TIMEOUT) as q:
            await q.cont()
        return await self._observe(paths)

    def _running(self, paths: VMPaths) -> Path:
        self._spec(paths)
        if process.find(paths) is None:
            raise VMStateError(f"VM {paths.dir.name} is not running")
        return paths.qmp

    async def suspend(self, vm_id: str) -> VMState:
        """Stop the vCPUs, save memory and devices to the state file, quit QEMU.
        Suspending a suspended VM is a no-op."""
        paths = self._paths(vm_id)
        self._spec(paths)
        pid = process.find(paths)
        if pid is None:
            if paths.state_file.exists():
                return await self._observe(paths)
            raise VMStateError(f"VM {vm_id} is not running, there is nothing to suspend")
        partial = paths.state_file.with_name(".suspend.state.tmp")
        async with qmp.session(str(paths.qmp), timeout=_QMP_TIMEOUT) as q:
            was_running = await q.status() == "running"
            await q.stop()
            try:
                await q.migrate_to_file(str(partial), timeout=self._suspend_timeout)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                if was_running:
                    with contextlib.suppress(VMError):
                        await q.cont()
                raise
            os.replace(partial, paths.state_file)
            await q.quit()
        if not await process.wait_gone(pid, timeout=10.0):
            await process.kill(pid)
        await self._reap(paths)
        return await self._observe(paths)

    async def resume(self, vm_id: str) -> VMState:
        """Start QEMU from the state file and run the guest; the file is
        removed once the guest runs (kept if resuming fails)."""
        paths = self._paths(vm_id)
        spec = self._spec(paths)
        if process.find(paths) is not None:
            return await self.unpause(vm_id)
        if not paths.state_file.exists():
            raise VMStateError(f"VM {vm_id} is not suspended")
        await self._launch(paths, spec, incoming=str(paths.state_file))
        try:
            async with qmp.session(str(paths.qmp), timeout=_QMP_TIMEOUT) as q:
                if await q.wait_incoming(timeout=self._suspend_timeout) != "running":
                    await q.cont()
        except BaseException:
            await self._kill(paths)
            raise
        paths.state_file.unlink()
        return await self._observe(paths)

    async def delete(self, vm_id: str) -> None:
        paths = self._paths(vm_id)
        spec_data = read_json(paths.spec)
        pid = process.find(paths)
        if pid is not None:
            await self._hard_off(paths, pid)
        if spec_data is not None:
            for nic in spec_from_json(spec_data).interfaces:
                if nic.tap:
                    await tap.remove(nic.tap)
        shutil.rmtree(paths.dir, ignore_errors=True)
        shutil.rmtree(paths.run_dir, ignore_errors=True)
        if paths.dir.exists():
            raise VMError(f"cannot remove {paths.dir}")
