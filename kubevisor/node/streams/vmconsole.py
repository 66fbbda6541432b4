"""A VM's serial console as a WebSocket: the stream server's
``/vmConsole/<vm uid>`` (the apiserver relays a console ticket's socket
here, :mod:`kubevisor.apiserver.vmconsole`).

The console is the unix stream socket QEMU serves for the VM
(``VMPaths(<vms_dir>/<uid>).console``, in the socket directory
:class:`~kubevisor.runtime.qemu.paths.VMPaths` derives from the VM's
directory; the node agent's VM driver root is ``<data-dir>/vms`` and a
VM's id is its uid). Binary frames carry console bytes both ways; text frames are ignored
(a serial line has no window size to resize). QEMU serves one client at a
time, so a second attach to the same VM *takes over*: the first session
is closed (code 1000, reason "console taken over by another session")
before the new one connects, so a session whose client vanished never
locks a user out. (A process outside this server holding the socket, e.g.
a test's own connection, is not seen: the attach then waits for it.) When
QEMU goes away the socket is closed with reason "the VM's console closed".
Refusals before the upgrade are Status answers: 400 for a malformed id,
404 when the VM has no console on this node. Authorization is the stream
server's: the apiserver's bearer token, checked before routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from kubevisor.node.streams.errors import StreamError, bad_request, not_found
from kubevisor.node.streams.websocket import WebSocket
from kubevisor.runtime.qemu.paths import VMPaths
from kubevisor.streaming.race import race

log = logging.getLogger(__name__)
_VM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_READ_SIZE = 65536
#: Seconds a taken-over session gets to let go of the socket.
TAKEOVER_TIMEOUT = 5.0
TAKEN_OVER = "console taken over by another session"
CONSOLE_CLOSED = "the VM's console closed"


@dataclass(eq=False)
class _Session:
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ConsoleSessions:
    """The console sessions of the VMs under ``vms_dir``, one per VM."""

    def __init__(self, vms_dir: str | Path) -> None:
        self.vms_dir = Path(vms_dir)
        self._current: dict[str, _Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def socket_path(self, vm_id: str) -> Path:
        if not _VM_ID.fullmatch(vm_id):
            raise bad_request(f"invalid VM id {vm_id!r}")
        return VMPaths(self.vms_dir / vm_id).console

    async def attach(self, ws: WebSocket, vm_id: str) -> None:
        """Serve ``ws`` with the console of ``vm_id`` until either end
        closes or another attach takes over. Raises StreamError before
        accepting."""
        path = self.socket_path(vm_id)
        if not path.exists():
            raise not_found(f"virtual machine {vm_id} has no console on this node "
                            "(it is not running here)")
        session = _Session()
        lock = self._locks.setdefault(vm_id, asyncio.Lock())
        async with lock:
            previous = self._current.get(vm_id)
            if previous is not None:
                previous.stop.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(previous.done.wait(), TAKEOVER_TIMEOUT)
            try:
                reader, writer = await asyncio.open_unix_connection(str(path))
            except OSError as exc:
                raise StreamError(503, f"cannot open the console of virtual machine {vm_id}: "
                                       f"{exc.strerror or exc}",
                                  reason="ServiceUnavailable") from exc
            self._current[vm_id] = session
        try:
            await ws.accept(None)
            reason = await _pump(ws, reader, writer, session.stop)
            await ws.close(1000, reason)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if self._current.get(vm_id) is session:
                del self._current[vm_id]
            session.done.set()


async def _pump(ws: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                stop: asyncio.Event) -> str:
    """Relay until one side ends; the close reason to give the client."""

    async def down() -> str:
        while chunk := await reader.read(_READ_SIZE):
            if not await ws.send(chunk):
                return ""
        return CONSOLE_CLOSED

    async def up() -> str:
        while (message := await ws.receive()) is not None:
            if isinstance(message, bytes) and message:
                writer.write(message)
                await writer.drain()
        return ""

    async def taken_over() -> str:
        await stop.wait()
        return TAKEN_OVER

    done, _ = await race(down(), up(), taken_over())
    for task in done:
        if not task.cancelled() and task.exception() is None:
            return task.result()
        if not task.cancelled() and isinstance(task.exception(), OSError):
            log.info("console relay ended: %s", task.exception())
            return CONSOLE_CLOSED
    return ""
