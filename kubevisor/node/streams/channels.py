"""The remote-command WebSocket protocols of exec and attach.

Every message carries one channel: a leading byte (``channel.k8s.io``,
``v4.channel.k8s.io``, ``v5.channel.k8s.io``) or a leading ASCII digit and
a base64 body (``base64.channel.k8s.io``, ``v4.base64.channel.k8s.io``).
Channels: 0 stdin (client → server), 1 stdout, 2 stderr, 3 error (the
final Status), 4 resize (JSON ``{"Width": w, "Height": h}``). v5 adds a
close signal, ``[255, channel]``: ``[255, 0]`` is the client's end of
stdin. v4 and v5 send a ``kind: Status`` JSON on channel 3 when the
command ends (Success, or Failure with reason NonZeroExitCode and the exit
code as a cause, worded as kubelet and the CRI runtimes word it); the
older protocols send only a failure's message. Then the WebSocket is
closed normally.

:func:`choose` picks the protocol (the client's order, as kube does);
:class:`Codec` frames messages; :func:`run_session` connects a process
(anything with ExecProcess's methods: an exec, or an attach to a
container's main process) to the socket. Called by
:mod:`kubevisor.node.streams.server`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kubevisor.node.streams.errors import bad_request, status_body
from kubevisor.node.streams.websocket import WebSocket
from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.types import ExecProcess

log = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE_SIGNAL = 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)
_TRUE = {"1", "true", "True", "TRUE", "t", "T"}
#: When a tty's size is applied again after the process started (seconds apart).
SETTLE_DELAYS = (0.05, 0.2, 0.5)


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Which streams an exec or attach asked for (kubelet's ``Options``)."""

    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False


def parse_options(query: Mapping[str, Sequence[str]]) -> StreamOptions:
    """The stream flags of a query, with kubelet's rules: no stderr with a
    tty, and at least one stream."""
    def flag(name: str) -> bool:
        return bool(query.get(name)) and query[name][0] in _TRUE

    tty = flag("tty")
    options = StreamOptions(stdin=flag("stdin"), stdout=flag("stdout"),
                            stderr=flag("stderr") and not tty, tty=tty)
    if not (options.stdin or options.stdout or options.stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    return options


def choose(offered: Sequence[str]) -> str | None:
    """The first of the client's protocols this server speaks; None when
    it offered none (then the plain channel protocol applies); raises 400
    when it offered only others."""
    if not offered:
        return None
    for protocol in offered:
        if protocol in PROTOCOLS:
            return protocol
    raise bad_request(f"requested protocol(s) are not supported: {list(offered)}; "
                      f"supports {list(PROTOCOLS)}")


class Codec:
    """Message framing of one negotiated protocol."""

    def __init__(self, protocol: str | None) -> None:
        self.protocol = protocol or V1
        self.base64 = "base64" in self.protocol
        self.v5 = self.protocol == V5
        self.structured_status = self.protocol in (V5, V4, V4_BASE64)

    def encode(self, channel: int, data: bytes) -> bytes | str:
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(data).decode()
        return bytes((channel,)) + data

    def decode(self, message: bytes | str) -> tuple[int, bytes] | None:
        """(channel, payload) of a client message; None for an empty or
        undecodable one."""
        if self.base64:
            text = message if isinstance(message, str) else message.decode("latin-1")
            if not text:
                return None
            try:
                return ord(text[0]) - ord("0"), base64.b64decode(text[1:], validate=True)
            except (binascii.Error, ValueError):
                return None
        raw = message if isinstance(message, bytes) else message.encode()
        if not raw:
            return None
        return raw[0], raw[1:]


def exit_status(code: int, command: Sequence[str]) -> dict[str, Any]:
    """The Status sent when a command ends with ``code``."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    words = " ".join(command)
    return {"metadata": {}, "status": "Failure",
            "message": ("command terminated with non-zero exit code: "
                        f"error executing command [{words}], exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def internal_status(message: str) -> dict[str, Any]:
    return status_body("Failure", code=500, reason="InternalError",
                       message=f"Internal error occurred: {message}")


class Session:
    """One exec or attach on an accepted WebSocket."""

    def __init__(self, ws: WebSocket, codec: Codec, options: StreamOptions) -> None:
        self.ws = ws
        self.codec = codec
        self.options = options
        self.size: tuple[int, int] | None = None

    async def send(self, channel: int, data: bytes) -> bool:
        return await self.ws.send(self.codec.encode(channel, data))

    async def greet(self) -> None:
        """An empty message on the lowest channel the client reads, so it
        knows the stream is up (kubelet does the same)."""
        channel = STDOUT if self.options.stdout else STDERR if self.options.stderr else ERROR
        await self.send(channel, b"")

    async def finish(self, status: dict[str, Any]) -> None:
        """The final Status on the error channel, then a normal close."""
        if self.codec.structured_status:
            await self.send(ERROR, orjson.dumps(status))
        elif status.get("status") != "Success":
            await self.send(ERROR, str(status.get("message") or "").encode())
        await self.ws.close(1000)

    async def _output(self, process: ExecProcess) -> None:
        while True:
            chunk = await process.read()
            if chunk is None:
                return
            stream, data = chunk
            wanted = self.options.stderr if stream == "stderr" else self.options.stdout
            if wanted and not await self.send(STDERR if stream == "stderr" else STDOUT, data):
                return

    async def _input(self, process: ExecProcess) -> None:
        """Client messages until it goes away (then the process is killed)."""
        stdin_open = self.options.stdin
        while True:
            message = await self.ws.receive()
            if message is None:
                break
            decoded = self.codec.decode(message)
            if decoded is None:
                continue
            channel, data = decoded
            if channel == STDIN and stdin_open and data:
                try:
                    await process.write_stdin(data)
                except RuntimeFailure:
                    stdin_open = False
            elif channel == RESIZE and self.options.tty:
                self.size = _size(data) or self.size
                if self.size is not None:
                    with contextlib.suppress(RuntimeFailure, OSError):
                        await process.resize(*self.size)
            elif channel == CLOSE_SIGNAL and self.codec.v5 and data[:1] == bytes((STDIN,)):
                if stdin_open:
                    stdin_open = False
                    with contextlib.suppress(RuntimeFailure):
                        await process.close_stdin()
        with contextlib.suppress(RuntimeFailure, OSError):
            await process.kill()

    async def run(self, process: ExecProcess) -> int:
        """Pipe until the process's output ends; returns its exit code."""
        if not self.options.stdin:
            with contextlib.suppress(RuntimeFailure):
                await process.close_stdin()
        helpers = [asyncio.create_task(self._input(process))]
        if self.options.tty:
            helpers.append(asyncio.create_task(self._settle(process)))
        try:
            await self._output(process)
            return await process.wait()
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            closer = getattr(process, "close", None)
            if closer is not None:
                closer()


    async def _settle(self, process: ExecProcess) -> None:
        """Apply the client's size again shortly after the start: a size
        sent while the runtime is still setting up the terminal (kubectl
        sends one at once) can be lost (runc applies its first resize only
        once the process runs)."""
        for delay in SETTLE_DELAYS:
            await asyncio.sleep(delay)
            if self.size is not None:
                with contextlib.suppress(RuntimeFailure, OSError):
                    await process.resize(*self.size)


def _size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a resize message, or None when malformed."""
    try:
        size = orjson.loads(data)
        width, height = int(size["Width"]), int(size["Height"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.info("ignoring a malformed resize message: %r", data[:100])
        return None
    return (width, height) if width > 0 and height > 0 else None


async def run_exec(ws: WebSocket, codec: Codec, options: StreamOptions, command: Sequence[str],
                   start: Any, *, attach: bool = False) -> None:
    """Accepted socket → start the process (``start()`` → ExecProcess),
    pipe, send the exit Status (Success for an attach, whatever the
    container's exit: kubelet reports only attach failures), close."""
    session = Session(ws, codec, options)
    await session.greet()
    try:
        process = await start()
    except RuntimeFailure as exc:
        await session.finish(internal_status(f"error executing command in container: {exc}"))
        return
    try:
        code = await session.run(process)
    except RuntimeFailure as exc:
        await session.finish(internal_status(f"error executing command in container: {exc}"))
        return
    await session.finish(exit_status(0 if attach else code, command))
