"""``python -m kubevisor.node KUBECONFIG DATA_DIR [options]``: the node agent
as a process of its own.

What ``kubevisor up`` (for the local host) and ``kubevisor join`` start,
and what tests kill with SIGKILL to check that pods survive their agent.
SIGTERM or SIGINT stop it cleanly (containers keep running either way).
``--parent-pid`` makes it exit when that process dies (Linux
PR_SET_PDEATHSIG), as the controller manager does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kubevisor.node")
    p.add_argument("kubeconfig", type=Path)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--node-name")
    p.add_argument("--pod-cidr")
    p.add_argument("--node-ip")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--network-prefix")
    p.add_argument("--cgroup-parent", default="/kubevisor")
    p.add_argument("--parent-pid", type=int)
    p.add_argument("--no-cluster-dns", action="store_true")
    p.add_argument("--streams-cert", help="TLS certificate of the stream server (kubelet's port)")
    p.add_argument("--streams-key")
    p.add_argument("--streams-token-file",
                   help="file holding the bearer token the apiserver presents to the streams")
    p.add_argument("--streams-port", type=int, default=10250)
    p.add_argument("--streams-host", default="0.0.0.0")
    return p.parse_args(argv)


def install_stop_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` in this process only.

    Not ``loop.add_signal_handler``: that routes signals through a wakeup
    socket which a forked child inherits (pyroute2 forks to open netlink
    sockets in pod namespaces, then SIGTERMs the child), so the child's
    SIGTERM would stop the agent. Here a forked copy that gets the signal
    dies of it as it should, and the agent never hears of it.
    """
    main_pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        logging.getLogger("kubevisor.node").info("%s: stopping", signal.Signals(signum).name)
        loop.call_soon_threadsafe(stop.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


async def _main(args: argparse.Namespace) -> None:
    from kubevisor.node.agent import run_node

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    install_stop_handlers(loop, stop)
    streams = None
    if args.streams_cert:
        from kubevisor.node.streams import StreamServerConfig

        assert args.streams_key and args.streams_token_file, \
            "--streams-cert needs --streams-key and --streams-token-file"
        streams = StreamServerConfig(
            cert_file=args.streams_cert, key_file=args.streams_key,
            token=Path(args.streams_token_file).read_text().strip(),
            host=args.streams_host, port=args.streams_port)
    await run_node(kubeconfig=args.kubeconfig, data_dir=args.data_dir,
                   node_name=args.node_name, stop=stop, pod_cidr=args.pod_cidr,
                   node_ip=args.node_ip, max_pods=args.max_pods,
                   network_prefix=args.network_prefix, cgroup_parent=args.cgroup_parent,
                   cluster_dns=not args.no_cluster_dns, streams=streams)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.parent_pid:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != args.parent_pid:
            return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
