"""The ``kubevisor`` command (console script ``kubevisor.cli.main:main``).

Parses arguments with typer and hands over to one module per sub-command:
``up`` (:mod:`kubevisor.cli.up`), ``bench`` (:mod:`kubevisor.cli.bench`),
``image`` (:mod:`kubevisor.cli.image`), ``console`` (:mod:`kubevisor.cli.console`),
``join`` (:mod:`kubevisor.cli.join`), ``token`` (:mod:`kubevisor.cli.tokens`) and
``version`` (here). Errors a user can fix are printed as one line on stderr
with exit status 1, never as a traceback.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer

from kubevisor.cli.bench import bench_app
from kubevisor.cli.console import console_app
from kubevisor.cli.image import image_app
from kubevisor.cli.join import join_command
from kubevisor.cli.tokens import token_app

app = typer.Typer(
    name="kubevisor",
    help="VMs and pods on a pool of Linux hosts, driven by plain kubectl.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bench_app, name="bench")
app.add_typer(image_app, name="image")
app.add_typer(console_app, name="console")
app.add_typer(token_app, name="token")
app.command("join")(join_command)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet = logging.DEBUG if verbose else logging.WARNING
    # uvicorn's start-up chatter, and one line per request of the in-process
    # controllers' HTTP client, only with --verbose.
    for name in ("uvicorn.error", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@app.command()
def up(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="State, credentials and kubeconfig live here.")
    ] = Path(".kubevisor"),
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT of the API server (HTTPS).")
    ] = "127.0.0.1:6443",
    store: Annotated[
        str, typer.Option("--store", help="sqlite, or etcd://HOST:PORT[,HOST:PORT...]")
    ] = "sqlite",
    no_node: Annotated[
        bool, typer.Option("--no-node", help="Do not run a node agent on this host.")
    ] = False,
    node_name: Annotated[
        str | None, typer.Option("--node-name", help="This host's Node name (default: host name).")
    ] = None,
    san: Annotated[
        list[str] | None,
        typer.Option("--san", help="Extra name or IP for the serving certificate (repeatable)."),
    ] = None,
    max_pods: Annotated[
        int | None, typer.Option("--max-pods", help="Pods this host's node takes (110).")
    ] = None,
    pod_cidr: Annotated[
        str | None, typer.Option("--pod-cidr", help="This host's pod range (default: from node IPAM).")
    ] = None,
    node_network_prefix: Annotated[
        str | None, typer.Option("--node-network-prefix", hidden=True,
                                 help="Name prefix of the node's bridge, namespaces and nft tables.")
    ] = None,
    node_cgroup_parent: Annotated[
        str | None, typer.Option("--node-cgroup-parent", hidden=True)
    ] = None,
    node_stream_port: Annotated[
        int | None, typer.Option("--node-stream-port", hidden=True,
                                 help="Port of the node's stream server (10250; 0 picks one).")
    ] = None,
    cluster_cidr: Annotated[
        str, typer.Option("--cluster-cidr", help="Pod range; each Node gets a /24 of it.")
    ] = "10.88.0.0/16",
    controllers: Annotated[
        str,
        typer.Option(help="Controller manager: process (a child process), in-process or none."),
    ] = "process",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the control plane in the foreground until SIGINT/SIGTERM."""
    from kubevisor.apiserver.server import ServeError
    from kubevisor.cli.up import CONTROLLER_MODES, UpOptions, parse_listen, run_up
    from kubevisor.store.errors import StoreError

    _configure_logging(verbose)
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if controllers not in CONTROLLER_MODES:
        raise _fail(f"--controllers must be one of {', '.join(CONTROLLER_MODES)}")
    options = UpOptions(
        data_dir=data_dir,
        host=host,
        port=port,
        store_url=store,
        node=not no_node,
        node_name=node_name,
        extra_sans=tuple(san or ()),
        controllers=controllers,
        cluster_cidr=cluster_cidr,
        max_pods=max_pods,
        pod_cidr=pod_cidr,
        network_prefix=node_network_prefix,
        cgroup_parent=node_cgroup_parent,
        stream_port=node_stream_port,
    )
    try:
        code = run_up(options)
    except (ServeError, StoreError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the kubevisor version and the Kubernetes version the API speaks."""
    from kubevisor.apiserver.config import ServerConfig

    try:
        mine = package_version("kubevisor")
    except PackageNotFoundError:
        mine = "unknown"
    api = ServerConfig.__dataclass_fields__["git_version"].default
    typer.echo(f"kubevisor {mine} (Kubernetes API {api})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
