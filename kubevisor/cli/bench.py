"""``kubevisor bench ...``: benchmarks that print JSON.

``bench api`` measures the API server (:mod:`kubevisor.cli.benchapi`), ``bench
scheduler`` the scheduler, ``bench pods`` pod starts on this host
(:mod:`kubevisor.cli.benchpods`); each prints the report on stdout (and to
``--output`` if given). Called by :mod:`kubevisor.cli.main`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

bench_app = typer.Typer(help="Benchmarks (print JSON).", no_args_is_help=True)


@bench_app.command("api")
def api(
    server: Annotated[str | None, typer.Option(help="URL of a running server (default: start one).")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="Credentials for --server.")] = None,
    server_pid: Annotated[int | None, typer.Option(help="PID of --server, to report its CPU.")] = None,
    procs: Annotated[int, typer.Option(help="Load generator processes.")] = 2,
    conns: Annotated[int, typer.Option(help="Concurrent clients (keep-alive connections).")] = 16,
    pods: Annotated[int, typer.Option(help="Pods created (and listed).")] = 10_000,
    gets: Annotated[int, typer.Option(help="GETs issued.")] = 20_000,
    rate: Annotated[float, typer.Option(help="Mutating calls per second in the fixed-rate phase.")] = 1000.0,
    rate_seconds: Annotated[float, typer.Option(help="Length of the fixed-rate phase.")] = 5.0,
    watchers: Annotated[int, typer.Option(help="Concurrent watch streams.")] = 100,
    watch_events: Annotated[int, typer.Option(help="Writes delivered to the watchers.")] = 200,
    watch_rate: Annotated[float, typer.Option(help="Writes per second during the watch phase.")] = 50.0,
    store_puts: Annotated[int, typer.Option(help="Writes in the raw store phase.")] = 5_000,
    list_repeats: Annotated[int, typer.Option(help="Lists of all pods, per format.")] = 5,
    controllers: Annotated[
        str,
        typer.Option(help="The own server's controller manager: process, in-process or none."),
    ] = "process",
    phases: Annotated[
        str, typer.Option(help="Comma-separated subset of store,create,get,list,mutate,watch.")
    ] = "store,create,get,list,mutate,watch",
    profile: Annotated[
        Path | None,
        typer.Option(help="Record the server with py-spy per phase into this folder (needs py-spy)."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
) -> None:
    """Measure creates/s, gets/s, mutating latency at a fixed rate, list and
    watch latency over HTTPS, and the raw store's puts/s in the same run."""
    from kubevisor.apiserver.server import ServeError, run_until_signalled
    from kubevisor.cli.benchapi import PHASES, BenchError, BenchOptions, run_bench
    from kubevisor.cli.profiling import ProfilerError

    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    unknown = set(chosen) - set(PHASES)
    if unknown:
        typer.echo(f"error: unknown phases {sorted(unknown)}; choose from {','.join(PHASES)}", err=True)
        raise typer.Exit(1)
    if controllers not in ("in-process", "process", "none"):
        typer.echo("error: --controllers must be in-process, process or none", err=True)
        raise typer.Exit(1)
    if server and kubeconfig is None:
        typer.echo("error: --server needs --kubeconfig", err=True)
        raise typer.Exit(1)
    options = BenchOptions(
        server=server, kubeconfig=kubeconfig, server_pid=server_pid, procs=procs, conns=conns, pods=pods, gets=gets,
        rate=rate, rate_seconds=rate_seconds, watchers=watchers, watch_events=watch_events,
        watch_rate=watch_rate, store_puts=store_puts, list_repeats=list_repeats,
        controllers=controllers, phases=chosen, profile_dir=profile,
    )
    try:
        report = run_until_signalled(lambda _stop: run_bench(options))
    except (BenchError, ServeError, ProfilerError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if output is not None:
        output.write_text(text + "\n")
    typer.echo(text)


@bench_app.command("scheduler")
def scheduler(
    server: Annotated[str | None, typer.Option(help="URL of a running cluster (default: start one).")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="Credentials for --server.")] = None,
    nodes: Annotated[int, typer.Option(help="Node objects created (no agents).")] = 5_000,
    pods: Annotated[int, typer.Option(help="Pods created and scheduled.")] = 10_000,
    conns: Annotated[int, typer.Option(help="Connections creating pods.")] = 16,
    controllers: Annotated[
        str, typer.Option(help="Own server's control plane: process (all controllers) or scheduler.")
    ] = "process",
    output: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
) -> None:
    """Measure pods bound per second through the API (kubevisor.cli.benchscheduler)."""
    from kubevisor.apiserver.server import ServeError, run_until_signalled
    from kubevisor.cli.benchapi import BenchError
    from kubevisor.cli.benchscheduler import SchedulerBenchOptions, run_scheduler_bench

    if server and kubeconfig is None:
        typer.echo("error: --server needs --kubeconfig", err=True)
        raise typer.Exit(1)
    if controllers not in ("process", "scheduler"):
        typer.echo("error: --controllers must be process or scheduler", err=True)
        raise typer.Exit(1)
    options = SchedulerBenchOptions(server=server, kubeconfig=kubeconfig, nodes=nodes, pods=pods,
                                    conns=conns, controllers=controllers)
    try:
        report = run_until_signalled(lambda _stop: run_scheduler_bench(options))
    except (BenchError, ServeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if output is not None:
        output.write_text(text + "\n")
    typer.echo(text)


@bench_app.command("pods")
def pods(
    phases: Annotated[
        str, typer.Option(help="Comma-separated subset of baseline,latency,burst,density.")
    ] = "baseline,latency,burst,density",
    baseline_n: Annotated[int, typer.Option(help="Raw OCI container starts (sequential).")] = 20,
    latency_pods: Annotated[int, typer.Option(help="Pods created open loop.")] = 100,
    latency_rate: Annotated[float, typer.Option(help="Pods created per second.")] = 20.0,
    burst_pods: Annotated[int, typer.Option(help="Pods created at once.")] = 100,
    conns: Annotated[int, typer.Option(help="Concurrent clients for burst and density.")] = 16,
    density_pods: Annotated[int, typer.Option(help="Pods running at once.")] = 1000,
    max_pods: Annotated[int | None, typer.Option(help="The node's max pods (default: enough).")] = None,
    image_archive: Annotated[
        Path | None, typer.Option(help="OCI archive to use (default: busybox built from /bin/busybox).")
    ] = None,
    image: Annotated[str, typer.Option(help="The image's name in the archive.")] = "busybox:1",
    timeout: Annotated[float, typer.Option(help="Seconds per phase to get the pods running.")] = 300.0,
    profile: Annotated[
        Path | None,
        typer.Option(help="py-spy recordings of agent, apiserver and controllers per phase here."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
) -> None:
    """Pod start latency, a burst and density on this host, beside the raw
    OCI start (kubevisor.cli.benchpods); needs root."""
    import os

    from kubevisor.apiserver.server import run_until_signalled
    from kubevisor.cli.benchapi import BenchError
    from kubevisor.cli.benchpods import PHASES, PodsBenchOptions, run_until_stopped
    from kubevisor.cli.profiling import ProfilerError

    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    if set(chosen) - set(PHASES):
        typer.echo(f"error: unknown phases {sorted(set(chosen) - set(PHASES))}", err=True)
        raise typer.Exit(1)
    if os.geteuid() != 0:
        typer.echo("error: bench pods needs root (containers, network)", err=True)
        raise typer.Exit(1)
    options = PodsBenchOptions(
        phases=chosen, baseline_n=baseline_n, latency_pods=latency_pods, latency_rate=latency_rate,
        burst_pods=burst_pods, conns=conns, density_pods=density_pods, max_pods=max_pods,
        image_archive=image_archive, image=image, timeout_s=timeout, profile_dir=profile)
    try:
        report = run_until_signalled(lambda stop: run_until_stopped(options, stop))
    except (BenchError, ProfilerError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if output is not None:
        output.write_text(text + "\n")
    typer.echo(text)
