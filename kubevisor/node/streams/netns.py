"""TCP connections made from inside a pod's network namespace.

``kubectl port-forward`` reaches ``localhost:PORT`` *of the pod*, so the
socket is created and connected from within the pod's namespace: a short
thread of its own enters it with setns(2) (only that thread moves), makes
and connects the socket, and ends; the socket keeps the namespace it was
born in. Like the CRI runtimes, IPv4 loopback is tried, then IPv6.
Called by :mod:`kubevisor.node.streams.portforward`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _connect_here(port: int, timeout: float) -> socket.socket:
    errors = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError as exc:
            sock.close()
            kind = "tcp4" if family == socket.AF_INET else "tcp6"
            shown = host if family == socket.AF_INET else f"[{host}]"
            errors.append(f"dial {kind} {shown}:{port}: connect: "
                          f"{(exc.strerror or str(exc)).lower()}")
            continue
        sock.setblocking(False)
        return sock
    raise ConnectionRefusedError(f"IPv4: {errors[0]} IPv6 {errors[1]}")


def connect_in(netns: str, port: int, *, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connected, non-blocking socket to localhost:``port`` inside the
    namespace at ``netns``. Blocks; raises OSError (with the CRI runtimes'
    wording when nothing listens)."""
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            result.append(exc)
            return
        try:
            _setns(target)  # this thread ends right after; it never goes back
            result.append(_connect_here(port, timeout))
        except BaseException as exc:
            result.append(exc)
        finally:
            os.close(target)

    thread = threading.Thread(target=run, name=f"netns-dial-{port}", daemon=True)
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


async def open_in(netns: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`connect_in` as asyncio streams."""
    sock = await asyncio.to_thread(connect_in, netns, port)
    return await asyncio.open_connection(sock=sock)
