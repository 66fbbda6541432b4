"""The OCI container runtime: :class:`~kubevisor.runtime.types.ContainerRuntime`
over runc or crun, with conmon as each container's monitor.

The node agent gets one from :func:`kubevisor.runtime.oci.open_runtime`.
Everything lives under ``state_dir`` (see :mod:`~kubevisor.runtime.oci.store`)
and nothing in memory matters: a new :class:`OciRuntime` on the same
directory lists and controls the containers an earlier one created, and
containers keep running when the agent is gone (conmon is their parent).

Failure rule: ``run`` either returns a running container or raises
:class:`~kubevisor.runtime.errors.ContainerError` having removed everything
it made (runtime state, cgroups, conmon, the container's directory);
``remove`` is idempotent and never touches the log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal as signals
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubevisor.runtime.errors import ContainerError, ContainerNotFoundError
from kubevisor.runtime.oci import cgroups, conmon
from kubevisor.runtime.oci import exec as oci_exec
from kubevisor.runtime.oci.bundle import build_config
from kubevisor.runtime.oci.command import RuntimeCommand, is_not_running
from kubevisor.runtime.oci.detect import RuntimeProfile
from kubevisor.runtime.oci.store import ContainerRecord, StateDir
from kubevisor.runtime.types import (
    ContainerSpec,
    ContainerState,
    ExecProcess,
    RuntimeCapabilities,
)

POLL_SECONDS = 0.02
#: How long a process that has gone may take to have its exit file written.
EXIT_FILE_WAIT = 2.0
KILL_WAIT = 10.0
SIGKILL_STATUS = 128 + signals.SIGKILL


class OciRuntime:
    """Containers on this host through one detected runtime profile."""

    def __init__(self, state_dir: str, profile: RuntimeProfile, *,
                 cgroup_parent: str = "/kubevisor") -> None:
        self.profile = profile
        self.capabilities: RuntimeCapabilities = profile.capabilities
        self.cgroup_parent = cgroup_parent.rstrip("/")
        self.dirs = StateDir(state_dir)
        self.command = profile.command(self.dirs.runtime_root(profile.name))

    # ------------------------------------------------------------- helpers

    def _command_for(self, record: ContainerRecord) -> RuntimeCommand:
        """The command that created the container controls it, whatever
        this instance would use for new ones."""
        return RuntimeCommand(record.runtime, tuple(record.prefix), record.root)

    def _record(self, container_id: str) -> ContainerRecord:
        record = self.dirs.load(container_id)
        if record is None:
            raise ContainerNotFoundError(f"container {container_id} not found")
        return record

    def _state_of(self, record: ContainerRecord) -> ContainerState | None:
        """The state from files and /proc alone, or None when the process is
        gone but conmon has not written the exit file yet."""
        cdir = self.dirs.dir(record.id)
        exit_file = cdir / "exit"
        common = {"id": record.id, "labels": dict(record.labels), "started_at": record.started_at}
        if exit_file.exists():
            try:
                code = int(exit_file.read_text().strip())
                finished = exit_file.stat().st_mtime
            except (OSError, ValueError):
                return None  # being written
            return ContainerState(status="stopped", pid=0, exit_code=code, finished_at=finished,
                                  reason=self._reason(record, code), **common)  # type: ignore[arg-type]
        alive = record.pid > 0 and conmon.pid_start(record.pid) == record.pid_start
        if alive:
            status = "running" if record.started_at is not None else "created"
            return ContainerState(status=status, pid=record.pid, **common)  # type: ignore[arg-type]
        return None

    def _reason(self, record: ContainerRecord, code: int) -> str:
        cdir = self.dirs.dir(record.id)
        if (cdir / "oom").exists():
            return "OOMKilled"
        if code == SIGKILL_STATUS and cgroups.oom_kills(record.cgroup_dirs) > 0:
            return "OOMKilled"
        return "Completed" if code == 0 else "Error"

    async def _current(self, record: ContainerRecord, *, wait: float = EXIT_FILE_WAIT) -> ContainerState:
        deadline = time.monotonic() + wait
        while True:
            # conmon is looked at before the files: it writes the exit file
            # and then exits, so once it is seen gone the files are final
            conmon_gone = not self._conmon_alive(record)
            state = self._state_of(record)
            if state is not None:
                return state
            if conmon_gone or time.monotonic() >= deadline:
                # Gone with no exit status (conmon killed, host rebooted).
                return ContainerState(id=record.id, status="stopped", exit_code=None,
                                      started_at=record.started_at, finished_at=None,
                                      reason="Error", labels=dict(record.labels))
            await asyncio.sleep(POLL_SECONDS)

    def _conmon_alive(self, record: ContainerRecord) -> bool:
        if record.conmon_pid <= 0 or conmon.pid_start(record.conmon_pid) is None:
            return False
        try:
            cmdline = Path(f"/proc/{record.conmon_pid}/cmdline").read_bytes()
        except OSError:
            return False
        return record.id.encode() in cmdline.split(b"\0")

    async def _wait_stopped(self, record: ContainerRecord, timeout: float) -> ContainerState | None:
        deadline = time.monotonic() + timeout
        while True:
            state = self._state_of(record)
            if state is not None and state.status == "stopped":
                return state
            if state is None and not self._conmon_alive(record):
                return await self._current(record, wait=0)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(POLL_SECONDS)

    async def _discard(self, record: ContainerRecord) -> None:
        """Remove every trace of a container but its log."""
        command = self._command_for(record)
        with contextlib.suppress(ContainerError):
            await command.delete(record.id)
        if self._conmon_alive(record):
            deadline = time.monotonic() + EXIT_FILE_WAIT
            while self._conmon_alive(record) and time.monotonic() < deadline:
                await asyncio.sleep(POLL_SECONDS)
            if self._conmon_alive(record):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.conmon_pid, signals.SIGKILL)
        for directory in record.cgroup_dirs.values():
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        for leftover in (self.dirs.exits / record.id, self.dirs.sockets / record.id):
            with contextlib.suppress(OSError):
                leftover.unlink()
        shutil.rmtree(self.dirs.dir(record.id), ignore_errors=True)

    # ----------------------------------------------------------- protocol

    async def run(self, spec: ContainerSpec) -> ContainerState:
        cdir = self.dirs.dir(spec.id)
        if not spec.args:
            raise ContainerError(f"container {spec.id}: no command to run")
        if not Path(spec.rootfs).is_dir():
            raise ContainerError(f"container {spec.id}: rootfs {spec.rootfs} is not a directory")
        try:
            cdir.mkdir()
        except FileExistsError as exc:
            raise ContainerError(f"container {spec.id} already exists") from exc
        cgroups_path = f"{self.cgroup_parent}/{spec.id}" if self.profile.way.cgroups else None
        record = ContainerRecord(
            id=spec.id, runtime=self.command.name, prefix=list(self.command.prefix),
            root=self.command.root, log_path=spec.log_path, labels=dict(spec.labels),
            created_at=time.time(),
        )
        try:
            (cdir / "config.json").write_text(json.dumps(build_config(spec, cgroups_path=cgroups_path)))
            self.dirs.save(record)
            Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
            pid = await conmon.spawn(conmon.ConmonArgs(
                conmon=self.profile.conmon, container_id=spec.id,
                runtime_argv=self.command.argv(), bundle=str(cdir), log_path=spec.log_path,
                exit_dir=str(self.dirs.exits), socket_dir=str(self.dirs.sockets),
                stdin=spec.stdin, tty=spec.tty,
            ))
            record.pid = pid
            record.pid_start = conmon.pid_start(pid) or 0
            record.conmon_pid = conmon.read_pid(cdir / "conmon.pid")
            record.cgroup_dirs = {k: v for k, v in cgroups.process_dirs(pid).items()
                                  if cgroups_path and v.endswith(cgroups_path)}
            self.dirs.save(record)
            await self.command.start(spec.id)
            record.started_at = time.time()
            self.dirs.save(record)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._discard(record))
            if isinstance(exc, ContainerError):
                raise ContainerError(f"container {spec.id}: {exc}") from exc
            if isinstance(exc, OSError):
                raise ContainerError(f"container {spec.id}: {exc}") from exc
            raise
        return ContainerState(id=spec.id, status="running", pid=record.pid,
                              started_at=record.started_at, labels=dict(record.labels))

    async def state(self, container_id: str) -> ContainerState | None:
        record = self.dirs.load(container_id)
        if record is None:
            return None
        return await self._current(record)

    async def list(self) -> list[ContainerState]:
        states = []
        for container_id in self.dirs.ids():
            state = await self.state(container_id)
            if state is not None:
                states.append(state)
        return states

    async def stop(self, container_id: str, *, grace_seconds: float) -> ContainerState:
        record = self._record(container_id)
        command = self._command_for(record)
        current = await self._current(record)
        if current.status == "stopped":
            return current
        for signum, wait in ((signals.SIGTERM, max(grace_seconds, 0.0)), (signals.SIGKILL, KILL_WAIT)):
            try:
                await command.kill(container_id, signum)
            except ContainerError as exc:
                if not (is_not_running(exc) or isinstance(exc, ContainerNotFoundError)):
                    raise
            final = await self._wait_stopped(record, wait)
            if final is not None:
                return final
        raise ContainerError(f"container {container_id} did not stop after SIGKILL")

    async def signal(self, container_id: str, signum: int) -> None:
        record = self._record(container_id)
        await self._command_for(record).kill(container_id, signum)

    async def remove(self, container_id: str) -> None:
        record = self.dirs.load(container_id)
        if record is None:
            return
        current = await self._current(record)
        if current.status != "stopped":
            with contextlib.suppress(ContainerError):
                await self._command_for(record).kill(container_id, signals.SIGKILL)
            await self._wait_stopped(record, KILL_WAIT)
        await self._discard(record)

    async def exec(self, container_id: str, args: Sequence[str], *, tty: bool = False,
                   stdin: bool = False, env: Mapping[str, str] | None = None) -> ExecProcess:
        record = self._record(container_id)
        current = await self._current(record)
        if current.status != "running":
            raise ContainerError(f"container {container_id} is not running")
        if not args:
            raise ContainerError("exec needs a command")
        cdir = self.dirs.dir(container_id)
        try:
            base = json.loads((cdir / "config.json").read_text())["process"]
        except (OSError, ValueError, KeyError) as exc:
            raise ContainerError(f"container {container_id}: unreadable config: {exc}") from exc
        process = oci_exec.exec_process(base, args, tty=tty, env=env)
        workdir = cdir / "exec" / uuid.uuid4().hex[:12]
        return await oci_exec.start(self._command_for(record), container_id, process,
                                    stdin=stdin, workdir=workdir)
