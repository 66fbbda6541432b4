"""``kubevisor console vm NAME``: attach the terminal to a VM's serial console.

Makes an RSA-2048 key pair, creates a VirtualMachineWebConsoleRequest for
the VM with the public half, waits for the controller's answer
(:mod:`kubevisor.controllers.vmconsole`; its Warning Events are shown,
and a missing VM or refused key ends the wait), decrypts the ticket and
opens the console WebSocket on the API server of the kubeconfig (the same
server ``status.proxyAddr`` names, reached with the kubeconfig's CA):
``<console_path>?ticket=...`` (:mod:`kubevisor.apiserver.vmconsole`). The
request is deleted once connected (or given up): its ticket has served.

On a terminal, stdin goes raw and ``Ctrl-]`` quits, as in telnet. Without
one (pipes, tests), stdin is sent as it comes, and after its end output is
shown until the console has been quiet for a moment. Errors a user can fix
are one line on stderr and exit status 1. The command group is
``console_app``, registered by :mod:`kubevisor.cli.main`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from kubevisor.streaming.race import race

API_VERSION = "vmoperator.vmware.com/v1alpha6"
ESCAPE = b"\x1d"  # Ctrl-]
#: Without a terminal: after stdin ends, stop once output paused this long...
QUIET_SECONDS = 1.0
#: ... or at the latest this long after stdin ended.
LINGER_MAX_SECONDS = 20.0

console_app = typer.Typer(help="Attach to a console.", no_args_is_help=True,
                          add_completion=False, pretty_exceptions_enable=False)


@console_app.callback()
def _group() -> None:
    """Attach to a console (kept a group: ``console vm NAME``)."""


class ConsoleError(Exception):
    """A failed step; its text is the one error line printed."""


def default_kubeconfig() -> Path:
    """$KUBECONFIG's first file, else ``.kubevisor/kubeconfig`` when it
    exists (``kubevisor up``'s), else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    if first:
        return Path(first)
    local = Path(".kubevisor") / "kubeconfig"
    return local if local.exists() else Path.home() / ".kube" / "config"


@console_app.command("vm")
def vm(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The VirtualMachine's name.")],
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="The VM's namespace (default: the kubeconfig context's).")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="Default: $KUBECONFIG, .kubevisor/kubeconfig, ~/.kube/config.")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for the console ticket.")] = 60.0,
) -> None:
    """Attach to a VM's serial console (Ctrl-] quits)."""
    try:
        code = asyncio.run(attach_vm(name, namespace=namespace,
                                     kubeconfig=kubeconfig or default_kubeconfig(),
                                     timeout=timeout))
    except ConsoleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


async def attach_vm(name: str, *, namespace: str | None, kubeconfig: Path,
                    timeout: float) -> int:
    from kubevisor.client import Client, ClientError, NotFoundError, load_kubeconfig

    try:
        config = load_kubeconfig(kubeconfig)
        client = Client.from_kubeconfig(kubeconfig)
    except ClientError as exc:
        raise ConsoleError(str(exc)) from exc
    async with client:
        ns = namespace or client.namespace
        try:
            await client.get(API_VERSION, "VirtualMachine", name, namespace=ns)
        except NotFoundError as exc:
            raise ConsoleError(f'virtualmachines.vmoperator.vmware.com "{name}" not found '
                               f'in namespace "{ns}"') from exc
        except ClientError as exc:
            raise ConsoleError(str(exc)) from exc
        ticket, request_name = await _request_ticket(client, name, ns, timeout)
        url = (config.server.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
               + _console_path(ns, request_name) + "?ticket=" + quote(ticket, safe=""))
        ssl_context = config.ssl_context()
        try:
            connection = await _connect(url, ssl_context if not isinstance(ssl_context, bool)
                                        else None)
        finally:
            with contextlib.suppress(ClientError):
                await client.delete(API_VERSION, "VirtualMachineWebConsoleRequest",
                                    request_name, namespace=ns)
    async with connection:
        return await _terminal(connection, f"{ns}/{name}")


def _console_path(namespace: str, request_name: str) -> str:
    from kubevisor.api.vmoperator.console import console_path

    return console_path(namespace, request_name)


async def _request_ticket(client: Any, vm_name: str, namespace: str,
                          timeout: float) -> tuple[str, str]:
    """Create the request, wait for its answer; (ticket, request name)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from kubevisor.api.vmoperator import console
    from kubevisor.client import ClientError

    key = await asyncio.to_thread(rsa.generate_private_key, public_exponent=65537, key_size=2048)
    body = {"apiVersion": API_VERSION, "kind": console.KIND,
            "metadata": {"generateName": f"{vm_name[:200]}-console-", "namespace": namespace},
            "spec": {"name": vm_name, "publicKey": console.public_key_pem(key)}}
    try:
        created = await client.create(body, namespace=namespace)
    except ClientError as exc:
        raise ConsoleError(f"cannot create a VirtualMachineWebConsoleRequest: {exc}") from exc
    request_name = created["metadata"]["name"]
    try:
        response = await _wait_response(client, request_name, namespace, timeout)
        try:
            return console.decrypt(key, response), request_name
        except ValueError as exc:
            raise ConsoleError(f"the console ticket cannot be decrypted: {exc}") from exc
    except BaseException:
        with contextlib.suppress(ClientError):
            await client.delete(API_VERSION, console.KIND, request_name, namespace=namespace)
        raise


#: Warning reasons that end the wait (the others are retried by the controller).
_FATAL = ("VirtualMachineNotFound", "InvalidPublicKey")


async def _wait_response(client: Any, request_name: str, namespace: str, timeout: float) -> str:
    from kubevisor.client import ClientError, NotFoundError

    deadline = time.monotonic() + timeout
    shown: set[str] = set()
    last_warning = ""
    while True:
        try:
            request = await client.get(API_VERSION, "VirtualMachineWebConsoleRequest",
                                       request_name, namespace=namespace)
        except NotFoundError as exc:
            raise ConsoleError(f"the console request {namespace}/{request_name} was deleted "
                               "before it was answered") from exc
        except ClientError as exc:
            raise ConsoleError(str(exc)) from exc
        response = (request.get("status") or {}).get("response")
        if response:
            return str(response)
        with contextlib.suppress(ClientError):
            events = await client.list("v1", "Event", namespace=namespace, field_selector=(
                f"involvedObject.name={request_name},involvedObject.kind="
                "VirtualMachineWebConsoleRequest"))
            for event in events.get("items") or []:
                if event.get("type") != "Warning":
                    continue
                reason, message = event.get("reason") or "", event.get("message") or ""
                if reason in _FATAL:
                    raise ConsoleError(message)
                last_warning = message
                if message not in shown:
                    shown.add(message)
                    typer.echo(f"waiting: {message}", err=True)
        if time.monotonic() >= deadline:
            raise ConsoleError(f"no console ticket within {timeout:g}s"
                               + (f": {last_warning}" if last_warning else
                                  " (is the vmconsole controller running?)"))
        await asyncio.sleep(0.2)


async def _connect(url: str, ssl_context: Any) -> Any:
    import orjson
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    try:
        return await connect(url, ssl=ssl_context, max_size=None, compression=None,
                             ping_interval=20, open_timeout=30)
    except InvalidStatus as exc:
        body = exc.response.body or b""
        try:
            message = orjson.loads(body).get("message")
        except (orjson.JSONDecodeError, AttributeError):
            message = None
        raise ConsoleError(message or f"the console answered {exc.response.status_code}") from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ConsoleError(f"cannot open the console: {exc}") from exc


# ------------------------------------------------------------- terminal


def _stdin_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
    """Read stdin in a daemon thread (works for ttys, pipes and files
    alike, and never holds the process at exit); b"" at its end."""
    fd = sys.stdin.fileno()

    def run() -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(queue.put_nowait, data)
            except RuntimeError:  # the loop is gone: the command has ended
                return
            if not data:
                return

    threading.Thread(target=run, name="console-stdin", daemon=True).start()


async def _terminal(connection: Any, label: str) -> int:
    """Wire stdin/stdout to the console until it closes, Ctrl-] (on a
    terminal) or the end of stdin plus a quiet moment (without one)."""
    from websockets.exceptions import ConnectionClosed

    tty = sys.stdin.isatty()
    out = sys.stdout.buffer
    last_output = time.monotonic()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    saved = None
    if tty:
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(sys.stdin.fileno())
        sys.stderr.write(f"Connected to the console of VM {label}. Escape character is '^]'.\r\n")
        sys.stderr.flush()
        ttymod.setraw(sys.stdin.fileno())

    async def down() -> str:
        nonlocal last_output
        try:
            async for message in connection:
                if isinstance(message, bytes):
                    out.write(message)
                    out.flush()
                    last_output = time.monotonic()
        except ConnectionClosed:
            pass
        return connection.close_reason or ""

    async def up() -> str:
        while True:
            data = await queue.get()
            if not data:
                break
            if tty and ESCAPE in data:
                before = data.split(ESCAPE, 1)[0]
                if before:
                    await connection.send(before)
                return ""
            await connection.send(data)
        if tty:
            return ""
        ended = time.monotonic()  # no terminal: show what the last input printed
        while True:
            now = time.monotonic()
            if now - ended >= LINGER_MAX_SECONDS or (
                    now - ended >= QUIET_SECONDS and now - last_output >= QUIET_SECONDS):
                return ""
            await asyncio.sleep(0.1)

    _stdin_reader(loop, queue)
    try:
        done, _ = await race(down(), up())
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
    reason = ""
    for task in done:
        if not task.cancelled() and task.exception() is None:
            reason = task.result()
    if tty:
        sys.stderr.write("\r\nConnection closed" + (f": {reason}" if reason else "") + ".\r\n")
    elif reason:
        sys.stderr.write(f"Connection closed: {reason}\n")
    sys.stderr.flush()
    return 0


if __name__ == "__main__":  # python -m kubevisor.cli.console vm NAME
    console_app()
