"""``python -m kubevisor.cli.controllers KUBECONFIG [PARENT_PID]``: the controller manager
in a process of its own.

Started by ``kubevisor up --controllers process`` (see
:func:`kubevisor.cli.up.controllers_running`) so that the controllers'
informers parse watch events with their own interpreter lock and core
instead of the apiserver's event loop. Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    assert len(args) in (1, 2), "usage: python -m kubevisor.cli.controllers KUBECONFIG [PARENT_PID]"
    if len(args) == 2:
        _die_with_parent(int(args[1]))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from kubevisor.apiserver.server import run_until_signalled
    from kubevisor.controllers.manager import run_controllers

    kubeconfig = Path(args[0])
    run_until_signalled(lambda stop: run_controllers(kubeconfig, stop))
    return 0


def _die_with_parent(parent: int) -> None:
    """Get SIGTERM when ``kubevisor up`` (pid ``parent``) dies, even by
    SIGKILL (Linux PR_SET_PDEATHSIG), so no orphan keeps calling a server
    that is gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(0)


if __name__ == "__main__":
    sys.exit(main())
