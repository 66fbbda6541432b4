"""``python -m kubevisor.cli.controllers KUBECONFIG [PARENT_PID] [--controllers A,B]
[--exclude A,B] [--ca-cert F --ca-key F] [--cluster-cidr CIDR]``: the
controller manager in a process of its own.

Started by ``kubevisor up --controllers process`` (see
:func:`kubevisor.cli.up.controllers_running`) so that the controllers'
informers parse watch events with their own interpreter lock and core
instead of the apiserver's event loop. ``--controllers`` and ``--exclude``
take names from :data:`kubevisor.controllers.manager.CONTROLLERS`, so the
scheduler can run in one such process (``--controllers scheduler``, as
kube-scheduler) and the other controllers in another (``--exclude
scheduler``). Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubevisor.cli.controllers")
    parser.add_argument("kubeconfig", type=Path)
    parser.add_argument("parent_pid", type=int, nargs="?", default=0)
    parser.add_argument("--ca-cert", type=Path, default=None,
                        help="cluster CA certificate (with --ca-key: sign node certificates)")
    parser.add_argument("--ca-key", type=Path, default=None)
    parser.add_argument("--cluster-cidr", default=None,
                        help="give each Node a pod CIDR from this range (node IPAM)")
    parser.add_argument("--controllers", type=_names, default=None,
                        help="comma-separated controllers to run (default: all)")
    parser.add_argument("--exclude", type=_names, default=[],
                        help="comma-separated controllers not to run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.parent_pid:
        _die_with_parent(args.parent_pid)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from kubevisor.apiserver.server import run_until_signalled
    from kubevisor.controllers.manager import run_controllers, selected

    try:
        selected(args.controllers, args.exclude)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_until_signalled(lambda stop: run_controllers(
        args.kubeconfig, stop, ca_cert_file=args.ca_cert, ca_key_file=args.ca_key,
        cluster_cidr=args.cluster_cidr, names=args.controllers, exclude=args.exclude))
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
