"""A short QMP session with one VM's QEMU, over the ``qemu.qmp`` library.
Each driver operation opens a session, does its commands and closes it,
so no connection outlives an operation and a restarted agent needs
nothing but the socket path. QMP and socket errors are translated here
into :class:`~kubevisor.runtime.qemu.errors.VMError`.
Called by :mod:`~kubevisor.runtime.qemu.driver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from qemu.qmp import QMPClient, QMPError

from kubevisor.runtime.qemu.errors import VMError

# qemu.qmp logs every disconnect at WARNING/ERROR; the driver reports what matters itself.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


class QMP:
    """The commands the driver uses, on one connected client."""

    def __init__(self, client: QMPClient, path: str) -> None:
        self._client = client
        self._path = path

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        try:
            return await self._client.execute(command, arguments)
        except (QMPError, OSError, EOFError) as exc:
            raise VMError(f"QMP {command} on {self._path}: {exc}") from exc

    async def status(self) -> str:
        """QEMU's run state: "running", "paused", "inmigrate", "postmigrate", ..."""
        return str((await self.execute("query-status"))["status"])

    async def powerdown(self) -> None:
        """Press the ACPI power button."""
        await self.execute("system_powerdown")

    async def quit(self) -> None:
        """Ask QEMU to exit now; the connection may drop before the answer."""
        try:
            await self._client.execute("quit")
        except (QMPError, OSError, EOFError):
            pass

    async def stop(self) -> None:
        await self.execute("stop")

    async def cont(self) -> None:
        await self.execute("cont")

    async def cpus(self) -> list[dict[str, Any]]:
        return list(await self.execute("query-cpus-fast"))

    async def migrate_to_file(self, path: str, *, timeout: float) -> None:
        """Save the (stopped) guest's state to ``path``; raises on failure."""
        await self.execute("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        await self.execute("migrate", {"uri": f"exec:cat > {shlex.quote(path)}"})
        deadline = time.monotonic() + timeout
        while True:
            info = await self.execute("query-migrate")
            status = info.get("status", "")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise VMError(f"saving the VM state failed: {info.get('error-desc', status)}")
            if time.monotonic() > deadline:
                await self.execute("migrate_cancel")
                raise VMError(f"saving the VM state took more than {timeout:g}s")
            await asyncio.sleep(0.02)

    async def wait_incoming(self, *, timeout: float) -> str:
        """Wait until an ``-incoming`` QEMU has loaded its state; its run state then."""
        deadline = time.monotonic() + timeout
        while (status := await self.status()) == "inmigrate":
            if time.monotonic() > deadline:
                raise VMError(f"loading the VM state took more than {timeout:g}s")
            await asyncio.sleep(0.01)
        return status


@asynccontextmanager
async def session(path: str, *, timeout: float = 5.0, name: str = "kubevisor") -> AsyncIterator[QMP]:
    """A connected :class:`QMP` on the unix socket ``path``; retries the
    connection until ``timeout`` (QEMU creates the socket as it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        client = QMPClient(name)
        try:
            await asyncio.wait_for(client.connect(path), max(0.1, deadline - time.monotonic()))
            break
        except (QMPError, OSError, TimeoutError) as exc:
            await _disconnect(client)
            if time.monotonic() >= deadline:
                raise VMError(f"QMP connect to {path}: {exc}") from exc
            await asyncio.sleep(0.05)
    try:
        yield QMP(client, path)
    finally:
        await _disconnect(client)


async def _disconnect(client: QMPClient) -> None:
    """Close the connection; errors of a peer that already went away
    (after ``quit``) are raised here by the library and mean nothing."""
    with contextlib.suppress(QMPError, OSError, EOFError):
        await client.disconnect()
