"""``python -m kubevisor.cli.nodeagent --kubeconfig K --data-dir D ...``: the
node agent in a process of its own.

Started by ``kubevisor up`` for the local host (unless ``--no-node``) and
by ``kubevisor join``. It runs :func:`kubevisor.node.agent.run_node` until
SIGTERM/SIGINT; with ``--parent-pid`` it also stops when that process dies
(even by SIGKILL). Containers it started keep running after it stops: the
next agent on the same data dir re-adopts them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubevisor-node")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--node-name", default=None)
    parser.add_argument("--node-ip", default=None)
    parser.add_argument("--pod-cidr", default=None)
    parser.add_argument("--stream-cert", default=None, help="serving certificate of the stream server")
    parser.add_argument("--stream-key", default=None)
    parser.add_argument("--stream-token-file", default=None,
                        help="file holding the token the apiserver presents")
    parser.add_argument("--stream-port", type=int, default=10250,
                        help="port of the stream server (logs, exec, port-forward); 0 picks one")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--max-pods", type=int, default=None, help="pods this node takes (110)")
    parser.add_argument("--network-prefix", default=None,
                        help="prefix of the bridge, netns, veth and nft names (default kv)")
    parser.add_argument("--cgroup-parent", default=None, help="cgroup of the containers (/kubevisor)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.parent_pid:
        from kubevisor.cli.controllers import _die_with_parent

        _die_with_parent(args.parent_pid)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from kubevisor.apiserver.server import run_until_signalled
    from kubevisor.node.agent import run_node

    kwargs = node_kwargs(args)
    run_until_signalled(lambda stop: run_node(stop=stop, **kwargs))
    return 0


def node_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The keyword arguments of ``run_node`` that these options give."""
    kwargs: dict[str, object] = {
        "kubeconfig": args.kubeconfig, "data_dir": args.data_dir, "node_name": args.node_name,
        "pod_cidr": args.pod_cidr, "node_ip": args.node_ip,
    }
    for key in ("max_pods", "network_prefix", "cgroup_parent"):
        if getattr(args, key, None) is not None:
            kwargs[key] = getattr(args, key)
    if args.stream_cert and args.stream_key and args.stream_token_file:
        from kubevisor.node.streams import StreamServerConfig

        kwargs["streams"] = StreamServerConfig(
            cert_file=str(args.stream_cert), key_file=str(args.stream_key),
            token=Path(args.stream_token_file).read_text().strip(), port=args.stream_port)
    return kwargs


if __name__ == "__main__":
    sys.exit(main())
