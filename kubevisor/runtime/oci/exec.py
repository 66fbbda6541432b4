"""Processes started in a running container (``runc exec``/``crun exec``).

Called by :meth:`OciRuntime.exec <kubevisor.runtime.oci.runtime.OciRuntime.exec>`.
The runtime runs in the foreground as our child, so its exit status is the
process's. Without a tty, stdin, stdout and stderr are three pipes. With a
tty the two runtimes differ, and each gets the way that lets the window be
resized:

- runc (which takes ``--console-socket`` only when it detaches, and then
  nobody waits for the process) runs on a pty pair of ours and copies
  between it and the container's pty; a resize sets our pty's size and
  sends runc SIGWINCH, which it forwards.
- crun copies the size once and ignores SIGWINCH, but accepts
  ``--console-socket`` in the foreground: it hands us the container pty's
  master over a unix socket (SCM_RIGHTS), and a resize is one ioctl on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import termios
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from kubevisor.runtime.errors import ContainerError
from kubevisor.runtime.oci.command import RuntimeCommand, clean_stderr
from kubevisor.runtime.oci.conmon import read_pid

Chunk = tuple[Literal["stdout", "stderr"], bytes]
READ_SIZE = 65536


def exec_process(base: Mapping[str, Any], args: Sequence[str], *, tty: bool,
                 env: Mapping[str, str] | None) -> dict[str, Any]:
    """The process spec of an exec: the container's own process (user, cwd,
    capabilities, env) with ``args``, ``env`` merged over its env, and a
    terminal when ``tty``. Passed whole (``--process``) because crun's
    ``--env`` replaces the environment instead of adding to it."""
    merged: dict[str, str] = {}
    for item in base.get("env", []):
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(env or {})
    if tty:
        merged.setdefault("TERM", "xterm")
    process = dict(base)
    process.update(args=list(args), env=[f"{k}={v}" for k, v in merged.items()], terminal=tty)
    process.pop("consoleSize", None)
    return process


def exec_argv(command: RuntimeCommand, container_id: str, *, process_file: str,
              pid_file: str, console_socket: str | None = None) -> list[str]:
    flags = ["exec", "--process", process_file, "--pid-file", pid_file]
    if console_socket:
        flags += ["--console-socket", console_socket]
    return command.argv(*flags, container_id)


def _kill_pid_file(pid_file: Path) -> None:
    pid = read_pid(pid_file)
    if pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class PipeExec:
    """A non-tty exec: separate stdout and stderr."""

    def __init__(self, proc: asyncio.subprocess.Process, workdir: Path) -> None:
        self._proc = proc
        self._workdir = workdir
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
        self._open_streams = 2
        self._pumps = [
            asyncio.create_task(self._pump("stdout", proc.stdout)),
            asyncio.create_task(self._pump("stderr", proc.stderr)),
        ]

    async def _pump(self, name: Literal["stdout", "stderr"],
                    stream: asyncio.StreamReader | None) -> None:
        try:
            while stream is not None:
                data = await stream.read(READ_SIZE)
                if not data:
                    break
                await self._queue.put((name, data))
        finally:
            await self._queue.put(None)

    async def write_stdin(self, data: bytes) -> None:
        if self._proc.stdin is None:
            raise ContainerError("exec was started without stdin")
        try:
            self._proc.stdin.write(data)
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ContainerError("exec process has closed its stdin") from exc

    async def close_stdin(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self._proc.stdin.wait_closed()

    async def read(self) -> Chunk | None:
        while self._open_streams:
            item = await self._queue.get()
            if item is not None:
                return item
            self._open_streams -= 1
        return None

    async def resize(self, cols: int, rows: int) -> None:
        return None  # no terminal, nothing to resize

    async def wait(self) -> int:
        code = await self._proc.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)
        return code

    async def kill(self) -> None:
        _kill_pid_file(self._workdir / "pid")
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()


class TtyExec:
    """A tty exec: one stream, read from and written to a pty master."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int, workdir: Path, *,
                 signal_resize: bool) -> None:
        self._proc = proc
        self._master = master
        self._workdir = workdir
        self._signal_resize = signal_resize
        self._eof = False
        os.set_blocking(master, False)

    async def _ready(self, add: str, remove: str) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        getattr(loop, add)(self._master, lambda: future.done() or future.set_result(None))
        try:
            await future
        finally:
            getattr(loop, remove)(self._master)

    async def read(self) -> Chunk | None:
        while not self._eof and self._master >= 0:
            try:
                data = os.read(self._master, READ_SIZE)
            except BlockingIOError:
                await self._ready("add_reader", "remove_reader")
                continue
            except OSError:  # EIO: every slave end is closed
                data = b""
            if data:
                return ("stdout", data)
            self._eof = True
        return None

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await self._ready("add_writer", "remove_writer")
                continue
            except OSError as exc:
                raise ContainerError(f"exec terminal is closed: {exc}") from exc
            view = view[written:]

    async def close_stdin(self) -> None:
        # The container's terminal is in cooked mode unless the process
        # changed it: end-of-transmission reads as end of file.
        with contextlib.suppress(ContainerError):
            await self.write_stdin(b"\x04")

    async def resize(self, cols: int, rows: int) -> None:
        set_winsize(self._master, cols=cols, rows=rows)
        if self._signal_resize and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGWINCH)

    async def wait(self) -> int:
        code = await self._proc.wait()
        # Drain is the reader's business; the fd stays open until then.
        shutil.rmtree(self._workdir, ignore_errors=True)
        return code

    async def kill(self) -> None:
        _kill_pid_file(self._workdir / "pid")
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def close(self) -> None:
        if self._master >= 0:
            os.close(self._master)
            self._master = -1

    def __del__(self) -> None:
        self.close()


def set_winsize(fd: int, *, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def start(command: RuntimeCommand, container_id: str, process: Mapping[str, Any], *,
                stdin: bool, workdir: Path) -> PipeExec | TtyExec:
    """Start one exec of ``process`` (see :func:`exec_process`); ``workdir``
    (created here) holds its process spec and pid file."""
    workdir.mkdir(parents=True)
    process_file = str(workdir / "process.json")
    pid_file = str(workdir / "pid")
    try:
        Path(process_file).write_text(json.dumps(process))
        if not process.get("terminal"):
            argv = exec_argv(command, container_id, process_file=process_file, pid_file=pid_file)
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            return PipeExec(proc, workdir)
        if command.name == "crun":
            return await _start_console_socket(command, container_id, process_file=process_file,
                                               workdir=workdir, pid_file=pid_file)
        return await _start_host_pty(command, container_id, process_file=process_file,
                                     workdir=workdir, pid_file=pid_file)
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ContainerError(f"exec in {container_id}: {exc}") from exc
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


async def _start_host_pty(command: RuntimeCommand, container_id: str, *, process_file: str,
                          workdir: Path, pid_file: str) -> TtyExec:
    master, slave = os.openpty()
    try:
        set_winsize(master, cols=80, rows=24)
        argv = exec_argv(command, container_id, process_file=process_file, pid_file=pid_file)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return TtyExec(proc, master, workdir, signal_resize=True)


async def _start_console_socket(command: RuntimeCommand, container_id: str, *, process_file: str,
                                workdir: Path, pid_file: str) -> TtyExec:
    # unix socket paths are short (108 bytes): keep this one in a short dir.
    sock_dir = tempfile.mkdtemp(prefix="kv-tty-")
    path = os.path.join(sock_dir, "s")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen(1)
        server.setblocking(False)
        argv = exec_argv(command, container_id, process_file=process_file, pid_file=pid_file,
                         console_socket=path)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        loop = asyncio.get_running_loop()
        accept = asyncio.ensure_future(loop.sock_accept(server))
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait({accept, exited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if not accept.done():
            accept.cancel()
            exited.cancel()
            err = await proc.stderr.read() if proc.returncode is not None and proc.stderr else b""
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise ContainerError(f"{command.name} exec {container_id}: "
                                 f"{clean_stderr(err) or 'no terminal received'}")
        exited.cancel()
        conn, _ = accept.result()
        with conn:
            conn.setblocking(True)
            conn.settimeout(30)
            _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, conn, 1024, 1)
        if not fds:
            raise ContainerError(f"{command.name} exec {container_id}: no terminal fd received")
        return TtyExec(proc, fds[0], workdir, signal_resize=False)
    finally:
        server.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
