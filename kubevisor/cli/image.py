"""``kubevisor image …``: the host's image store from the command line.

``kubevisor image import FILE.tar`` loads an OCI image archive (as
``skopeo copy … oci-archive:FILE.tar:NAME:TAG`` writes it) into
``<data-dir>/images``, the store the node agent on this host pulls into,
so pods can use images with no registry (``imagePullPolicy: IfNotPresent``
or ``Never``). A running agent sees them at once. Blobs show a progress
bar while they are copied. Called by :mod:`kubevisor.cli.main`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

image_app = typer.Typer(help="Images on this host.", no_args_is_help=True)


@image_app.command("import")
def import_(
    archive: Annotated[Path, typer.Argument(help="An OCI image archive (oci-archive tar).")],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The node's data dir (images live in DIR/images).")
    ] = Path(".kubevisor"),
) -> None:
    """Load an OCI image archive into this host's image store."""
    from kubevisor.runtime.errors import ImageError
    from kubevisor.runtime.images import LocalImageStore

    if not archive.is_file():
        typer.echo(f"error: {archive}: no such file", err=True)
        raise typer.Exit(1)
    console = Console(stderr=True)

    async def run() -> list[tuple[str, str]]:
        store = LocalImageStore(data_dir / "images")
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), console=console, transient=True,
                          disable=not console.is_terminal) as bar:
                tasks: dict[str, int] = {}

                def progress(what: str, done: int, total: int | None) -> None:
                    if what not in tasks:
                        tasks[what] = bar.add_task(what.removeprefix("sha256:")[:12], total=total)
                    bar.update(tasks[what], completed=done, total=total)

                images = await store.import_archive(str(archive), progress=progress)
            return [(image.ref, image.id) for image in images]
        finally:
            await store.aclose()

    try:
        loaded = asyncio.run(run())
    except (ImageError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for ref, image_id in loaded:
        typer.echo(f"{ref or '<no name>'}\t{image_id}")


from kubevisor.cli.vmimage import add as _vm_image_add  # noqa: E402

image_app.command("add")(_vm_image_add)


@image_app.command("add-test-guest")
def add_test_guest(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The image object's name.")]
    = "test-guest",
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n",
        help="Publish a VirtualMachineImage in NS (default: a ClusterVirtualMachineImage).")]
    = None,
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="The data dir (images live in DIR/images/vm).")] = Path(".kubevisor"),
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="Default: DATA_DIR/kubeconfig.")] = None,
) -> None:
    """Build kubevisor's small test guest as a disk image (Debian's kernel and
    a busybox root that reads the cloud-init seed; seconds, offline once its
    .debs are cached) and publish it like ``image add``."""
    from kubevisor.runtime.guest import build_test_disk_image
    from kubevisor.runtime.qemu.errors import VMError

    console = Console(stderr=True)
    try:
        with console.status("building the test guest's disk image"):
            path = build_test_disk_image(data_dir / "cache" / "guest")
    except (VMError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _vm_image_add(name, path, namespace=namespace, data_dir=data_dir, kubeconfig=kubeconfig,
                  firmware=None, os_id="", os_type="", os_version="")
