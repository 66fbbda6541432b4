"""conmon, the per-container monitor that outlives the agent.

Called by :mod:`kubevisor.runtime.oci.runtime` to create a container.
conmon double-forks away from us, runs ``<runtime> create``, reports the
container's pid (or the runtime's error) on the ``_OCI_SYNCPIPE`` pipe
(API version 1: one JSON line ``{"data": pid, "message": ...}``), then
stays as the container's parent: it writes stdout and stderr to the log in
the CRI format (``k8s-file`` driver), and on exit writes the exit status to
``<persist-dir>/exit`` and ``<exit-dir>/<id>`` (and ``<persist-dir>/oom``
when the OOM killer struck). Also: small /proc helpers for the pids it and
the runtime hand us.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubevisor.runtime.errors import ContainerError


@dataclass(frozen=True, slots=True)
class ConmonArgs:
    conmon: str
    container_id: str
    runtime_argv: Sequence[str]  # the runtime and its global flags (incl. --root)
    bundle: str
    log_path: str
    exit_dir: str
    socket_dir: str
    stdin: bool = False
    tty: bool = False

    def argv(self) -> list[str]:
        runtime, *runtime_args = self.runtime_argv
        argv = [
            self.conmon, "--api-version", "1",
            "--cid", self.container_id, "--cuuid", self.container_id, "--name", self.container_id,
            "--runtime", runtime,
            *(f"--runtime-arg={arg}" for arg in runtime_args),
            "--bundle", self.bundle,
            "--container-pidfile", str(Path(self.bundle) / "pid"),
            "--conmon-pidfile", str(Path(self.bundle) / "conmon.pid"),
            "--log-path", f"k8s-file:{self.log_path}",
            "--exit-dir", self.exit_dir,
            "--persist-dir", self.bundle,
            "--socket-dir-path", self.socket_dir,
            "--log-level", "error",
        ]
        if self.stdin:
            argv.append("--stdin")
        if self.tty:
            argv.append("--terminal")
        return argv


async def spawn(args: ConmonArgs, *, timeout: float = 60.0) -> int:
    """Start conmon and wait until the container is created; return its pid.
    Raises ContainerError with the runtime's message when create fails."""
    read_fd, write_fd = os.pipe()
    err_path = Path(args.bundle) / "conmon.err"
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0))
    try:
        with open(err_path, "wb") as err_file:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *args.argv(), stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL, stderr=err_file,
                    pass_fds=(write_fd,), cwd=args.bundle,
                    env={**os.environ, "_OCI_SYNCPIPE": str(write_fd)},
                )
            except OSError as exc:
                raise ContainerError(f"cannot run conmon: {exc}") from exc
            finally:
                os.close(write_fd)
        rc = await proc.wait()  # the first conmon exits once it has forked
        if rc != 0:
            raise ContainerError(f"conmon failed (exit {rc}): {_tail(err_path)}")
        raw = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError as exc:
        raise ContainerError(f"conmon did not report the container within {timeout:.0f}s") from exc
    finally:
        transport.close()
    line = raw.decode(errors="replace").strip()
    if not line:
        raise ContainerError(f"conmon exited without reporting the container: {_tail(err_path)}")
    try:
        report = json.loads(line)
        pid = int(report["data"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ContainerError(f"conmon sent an unreadable report: {line!r}") from exc
    if pid <= 0:
        message = str(report.get("message") or "create failed").strip()
        raise ContainerError(message)
    return pid


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()[-2000:]
    except OSError:
        return ""


def pid_start(pid: int) -> int | None:
    """The start time of live process ``pid`` (clock ticks since boot), or
    None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
