"""Helpers for tests that boot the small test guest: the guest image
(built once into the repository's ``.cache/guest``), a spec for it, and
the serial console as a test talks to it (wait for a line in the log,
run a shell command over the console socket and read its output)."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
from pathlib import Path

from kubevisor.runtime.guest import READY_PREFIX, GuestImage, build_test_guest
from kubevisor.runtime.qemu import DirectBoot, Disk, NetworkInterface, Seed, VMSpec
from kubevisor.runtime.qemu import seed as seeds

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / ".cache" / "guest"
BOOT_TIMEOUT = 60.0


def guest_image() -> GuestImage:
    return build_test_guest(CACHE)


def random_mac() -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def make_seed(path: Path, *, hostname: str, runcmd: list[str | list[str]] | None = None,
                    write_files: list[dict[str, str]] | None = None,
                    network_config: str | None = None, fmt: str = "iso") -> Seed:
    config: dict[str, object] = {}
    if runcmd:
        config["runcmd"] = runcmd
    if write_files:
        config["write_files"] = write_files
    config["ssh_authorized_keys"] = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest kubevisor@test"]
    await seeds.write_seed(
        str(path), meta_data=seeds.render_meta_data(instance_id=f"i-{hostname}", hostname=hostname),
        user_data=seeds.render_user_data(config), network_config=network_config,
        fmt=fmt)  # type: ignore[arg-type]
    return Seed(str(path))


def guest_spec(vm_id: str, *, seed: Seed | None = None, interfaces: list[NetworkInterface] | None = None,
               disks: list[Disk] | None = None, memory_mib: int = 192, firmware: str = "bios") -> VMSpec:
    guest = guest_image()
    return VMSpec(id=vm_id, cpus=1, memory_bytes=memory_mib << 20, firmware=firmware,  # type: ignore[arg-type]
                  disks=tuple(disks or ()), seed=seed, interfaces=tuple(interfaces or ()),
                  direct_boot=DirectBoot(guest.kernel, guest.initrd, guest.append))


async def wait_for_line(log: str, pattern: str, *, timeout: float = BOOT_TIMEOUT, after: int = 0) -> re.Match[str]:
    """The first match of ``pattern`` in the console log past byte ``after``."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while True:
        try:
            text = Path(log).read_bytes()[after:].decode(errors="replace")
        except FileNotFoundError:
            text = ""
        match = regex.search(text)
        if match:
            return match
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in {log} within {timeout:g}s; tail:\n{text[-2000:]}")
        await asyncio.sleep(0.1)


async def wait_ready(log: str, *, timeout: float = BOOT_TIMEOUT, after: int = 0) -> tuple[str, str]:
    """(hostname, ip) from the guest's readiness line."""
    match = await wait_for_line(log, READY_PREFIX + r" (\S+) (\S+)", timeout=timeout, after=after)
    return match.group(1), match.group(2)


async def console_run(console_socket: str, command: str, *, timeout: float = 20.0) -> str:
    """Run ``command`` in the guest's console shell; its output (between markers)."""
    tag = secrets.token_hex(4)
    reader, writer = await asyncio.open_unix_connection(console_socket)
    try:
        # "B""EGIN" in the typed line, BEGIN in the output: the echo never matches
        writer.write(f'\necho "B""EGIN-{tag}"; {command}; echo "E""ND-{tag}"\n'.encode())
        await writer.drain()
        data = b""
        deadline = time.monotonic() + timeout
        pattern = re.compile(rf"BEGIN-{tag}\r?\n(.*?)END-{tag}".encode(), re.S)
        while (match := pattern.search(data)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no answer to {command!r} on the console: {data[-1000:]!r}")
            try:
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError("the console socket closed")
            data += chunk
        return match.group(1).decode(errors="replace").replace("\r\n", "\n")
    finally:
        writer.close()
        await writer.wait_closed()


def http_get(port: int, *, host: str = "127.0.0.1", timeout: float = 20.0) -> str:
    """GET / from the guest's httpd; retried until ``timeout`` (slirp's forward
    accepts before the guest answers)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            if data:
                return data.decode(errors="replace")
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"the guest did not answer HTTP on {host}:{port}: {last}")
