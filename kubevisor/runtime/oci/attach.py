"""Attaching to a container's main process through conmon.

conmon keeps, for every container it monitors, an attach socket
(``SOCK_SEQPACKET``, ``<bundle>/attach``, reached through
``<socket-dir>/<id>`` — a symlink to the bundle): each packet it sends
is one read of the container's output, prefixed by a byte saying which
pipe (2 stdout, 3 stderr; with a terminal everything is stdout), and
whatever a client sends goes to the container's stdin when it was created
with one. Shutting down our sending side closes the container's stdin (as
``kubectl attach -i`` does at end of input); closing the socket detaches
and leaves the container running. The terminal is resized by writing
``1 <rows> <cols>`` to the ``ctl`` FIFO in the bundle. Output written
before the attach is not replayed (it is in the log).

:func:`attach` returns an object with ExecProcess's methods, so the node
agent's stream server drives it like an exec. Called through
:meth:`OciRuntime.attach <kubevisor.runtime.oci.runtime.OciRuntime>` once
that method delegates here (today the stream server calls this function
directly for an :class:`~kubevisor.runtime.oci.runtime.OciRuntime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kubevisor.runtime.errors import ContainerError, ContainerNotFoundError

if TYPE_CHECKING:
    from kubevisor.runtime.oci.runtime import OciRuntime

STDOUT_PIPE, STDERR_PIPE = 2, 3
PACKET = 8192
Chunk = tuple[Literal["stdout", "stderr"], bytes]


class AttachProcess:
    """A client of one container's conmon attach socket."""

    def __init__(self, runtime: OciRuntime, container_id: str, sock: socket.socket,
                 bundle: Path) -> None:
        self._runtime = runtime
        self._id = container_id
        self._sock = sock
        self._bundle = bundle
        self._closed = False

    async def read(self) -> Chunk | None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                packet = await loop.sock_recv(self._sock, PACKET + 1)
            except OSError:
                return None
            if not packet:
                return None
            if packet[0] == STDERR_PIPE:
                return ("stderr", packet[1:])
            if packet[0] == STDOUT_PIPE:
                return ("stdout", packet[1:])
        return None

    async def write_stdin(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            for start in range(0, len(data), PACKET):
                await loop.sock_sendall(self._sock, data[start:start + PACKET])
        except OSError as exc:
            raise ContainerError(f"attach to {self._id}: stdin closed: {exc}") from exc

    async def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    async def resize(self, cols: int, rows: int) -> None:
        try:
            fd = os.open(self._bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return  # conmon is gone or has no terminal control
            raise ContainerError(f"attach to {self._id}: cannot resize: {exc}") from exc
        try:
            os.write(fd, f"1 {rows} {cols}\n".encode())
        finally:
            os.close(fd)

    async def wait(self) -> int:
        """The container's exit code once it has stopped; 0 when it is
        still running (the attach ended by detaching)."""
        self.close()
        state = await self._runtime.state(self._id)
        if state is None or state.status != "stopped":
            return 0
        return state.exit_code if state.exit_code is not None else -1

    async def kill(self) -> None:
        """Detach (the container keeps running)."""
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()


async def attach(runtime: OciRuntime, container_id: str, *, stdin: bool = False,
                 tty: bool = False) -> AttachProcess:
    """Attach to a running container's main process. ``stdin`` and ``tty``
    say what the client wants; the container's own settings decide what
    it gets. Raises ContainerNotFoundError / ContainerError."""
    if runtime.dirs.load(container_id) is None:
        raise ContainerNotFoundError(f"container {container_id} not found")
    state = await runtime.state(container_id)
    if state is None or state.status != "running":
        raise ContainerError(f"container {container_id} is not running")
    link = runtime.dirs.sockets / container_id
    bundle = Path(os.path.realpath(link)) if link.is_symlink() else runtime.dirs.dir(container_id)
    # The socket's full path may exceed sun_path's 108 bytes: connect
    # through a descriptor of its directory instead.
    dir_fd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dir_fd}/attach")
    except OSError as exc:
        sock.close()
        raise ContainerError(f"attach to {container_id}: {exc}") from exc
    finally:
        os.close(dir_fd)
    return AttachProcess(runtime, container_id, sock, bundle)
