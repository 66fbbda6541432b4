"""``kubevisor image add NAME FILE``: publish a VM disk image in the library.

The qcow2 or raw file is checked with ``qemu-img info``, copied into
``<data-dir>/images/vm/sha256/<hex>`` (content-addressed, with a progress
bar on a terminal; the same content is stored once), its firmware read
from its partition table, and a ClusterVirtualMachineImage (or, with
``--namespace``, a VirtualMachineImage) named NAME created or updated
through the API with its status: disks, firmware, osInfo, type and a
Ready condition. The digest rides in an annotation so the node agent
finds the file; a kernel-boot image (a FAT disk with its own kernel,
:mod:`kubevisor.runtime.qemu.kernelboot`) also gets the annotation
``vmoperator.kubevisor.io/boot: kernel`` and the osInfo its boot.json
gives. Registered on ``image_app`` by :mod:`kubevisor.cli.image`.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

API_VERSION = "vmoperator.vmware.com/v1alpha6"
FIELD_MANAGER = "kubevisor-image-add"
FORMATS = ("qcow2", "raw")


class AddError(Exception):
    """Bad input or a failed step; its text is the one error line printed."""


def add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The image object's name.")],
    source: Annotated[str, typer.Argument(
        metavar="FILE_OR_URL", help="A qcow2 or raw disk image file, or an http(s) URL of one.")],
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n",
        help="Publish a VirtualMachineImage in NS (default: a ClusterVirtualMachineImage).")] = None,
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="The data dir (images live in DIR/images/vm).")] = Path(".kubevisor"),
    kubeconfig: Annotated[Path | None, typer.Option(
        "--kubeconfig", help="Default: DATA_DIR/kubeconfig.")] = None,
    firmware: Annotated[str | None, typer.Option(
        "--firmware", help="bios or uefi (default: read from the partition table).")] = None,
    os_id: Annotated[str, typer.Option("--os-id", help="status.osInfo.id")] = "",
    os_type: Annotated[str, typer.Option("--os-type", help="status.osInfo.type, e.g. linux")] = "",
    os_version: Annotated[str, typer.Option("--os-version", help="status.osInfo.version")] = "",
) -> None:
    """Import a VM disk image (qcow2 or raw) and publish it as a (Cluster)VirtualMachineImage."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        fw = _firmware_option(firmware)
        result = asyncio.run(_add(
            name, source, namespace=namespace, root=data_dir / "images" / "vm",
            kubeconfig=kubeconfig or data_dir / "kubeconfig", firmware=fw,
            os_info={"id": os_id, "type": os_type, "version": os_version}, console=console))
    except AddError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(result)


def _firmware_option(value: str | None) -> str | None:
    if value is None:
        return None
    mapped = {"bios": "bios", "uefi": "efi", "efi": "efi"}.get(value.lower())
    if mapped is None:
        raise AddError(f"--firmware must be bios or uefi, not {value!r}")
    return mapped


async def _add(name: str, source: str, *, namespace: str | None, root: Path, kubeconfig: Path,
               firmware: str | None, os_info: dict[str, str], console: Any) -> str:
    from kubevisor.client import Client, ClientError
    from kubevisor.runtime.qemu import kernelboot, library
    from kubevisor.runtime.qemu.errors import DiskError

    is_url = "://" in source
    if not is_url:  # cheap checks of a local file before anything else
        if not Path(source).is_file():
            raise AddError(f"{source}: no such file")
        await _inspect(Path(source), label=source)
    if not kubeconfig.is_file():
        raise AddError(f"{kubeconfig}: no kubeconfig (is the server up? see --kubeconfig)")
    kind = "VirtualMachineImage" if namespace else "ClusterVirtualMachineImage"
    try:  # fail before a long copy when the API cannot take the object
        async with Client.from_kubeconfig(kubeconfig) as client:
            await client.resource(API_VERSION, kind)
            if namespace:
                await client.get("v1", "Namespace", namespace)
    except ClientError as exc:
        raise AddError(f"{kind} {name}: {exc}") from exc
    download = await _download(source, root, console) if is_url else None
    file = download or Path(source)
    try:
        fmt, virtual_size, actual_size = await _inspect(file, label=source)
        if download is not None:
            stored = await asyncio.to_thread(library.adopt_file, download, root)
        else:
            stored = await asyncio.to_thread(_import_with_bar, file, root, console)
        if firmware is None:
            firmware = await library.detect_firmware(stored.path, fmt)
        boot = await kernelboot.probe(stored.path, fmt)
    except DiskError as exc:
        raise AddError(str(exc)) from exc
    finally:
        if download is not None:
            download.unlink(missing_ok=True)
    if boot is not None:  # options given on the command line win over boot.json
        os_info = {**boot.os_info, **{k: v for k, v in os_info.items() if v}}
    status = image_status(name, fmt=fmt, virtual_size=virtual_size,
                          actual_size=actual_size or stored.size, firmware=firmware,
                          digest=stored.digest, os_info=os_info)
    try:
        async with Client.from_kubeconfig(kubeconfig) as client:
            await publish(client, kind, name, namespace=namespace, digest=stored.digest,
                          status=status, kernel_boot=boot is not None)
    except ClientError as exc:
        raise AddError(f"{kind} {name}: {exc}") from exc
    where = f"{namespace}/" if namespace else ""
    copied = "stored" if stored.added else "already stored"
    booted = ", kernel boot" if boot is not None else ""
    return (f"{kind.lower()} {where}{name}: {fmt}, {virtual_size} bytes, "
            f"{firmware}{booted}, {stored.digest} ({copied})")


async def _inspect(file: Path, *, label: str) -> tuple[str, int, int]:
    """Format, virtual size and allocated size; AddError unless ``file``
    is a standalone qcow2 or raw disk."""
    from kubevisor.runtime.qemu import disks
    from kubevisor.runtime.qemu.errors import DiskError

    try:
        info = await disks.info(str(file))
    except DiskError as exc:
        raise AddError(f"{label}: not a disk image ({exc})") from exc
    if info.format not in FORMATS:
        raise AddError(f"{label}: a {info.format} image; only qcow2 and raw are supported")
    if info.backing_file:
        raise AddError(f"{label}: has a backing file ({info.backing_file}); "
                       "convert it to a standalone image first")
    size = file.stat().st_size
    if info.format == "raw" and (size == 0 or size % 512):
        raise AddError(f"{label}: not a disk image (raw, but {size} bytes "
                       "is not a whole number of 512-byte sectors)")
    return info.format, info.virtual_size, info.actual_size


async def _download(url: str, root: Path, console: Any) -> Path:
    """GET ``url`` (http or https) into the library's download dir, with a
    progress bar; the caller removes the file."""
    import tempfile

    import httpx

    from kubevisor.runtime.qemu import library

    if not url.startswith(("http://", "https://")):
        raise AddError(f"{url}: only http and https URLs are supported")
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=library.download_dir(root))
    path = Path(tmp)
    try:
        with _bar(console) as bar, open(fd, "wb") as out:
            async with httpx.AsyncClient(follow_redirects=True, timeout=60) as http, \
                    http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise AddError(f"{url}: HTTP {resp.status_code} {resp.reason_phrase}")
                total = int(resp.headers.get("content-length") or 0) or None
                task = bar.add_task(url.rsplit("/", 1)[-1] or url, total=total)
                async for chunk in resp.aiter_bytes(library.CHUNK):
                    out.write(chunk)
                    bar.advance(task, len(chunk))
    except (httpx.HTTPError, OSError) as exc:
        path.unlink(missing_ok=True)
        raise AddError(f"{url}: {exc or type(exc).__name__}") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _bar(console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def _import_with_bar(file: Path, root: Path, console: Any) -> Any:
    from kubevisor.runtime.qemu import library

    with _bar(console) as bar:
        task = bar.add_task(file.name, total=file.stat().st_size)
        return library.import_file(
            file, root, progress=lambda done, total: bar.update(task, completed=done, total=total))


def image_status(name: str, *, fmt: str, virtual_size: int, actual_size: int, firmware: str,
                 digest: str, os_info: dict[str, str]) -> dict[str, Any]:
    """The status ``image add`` publishes for one imported disk."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {
        "name": name,
        "type": fmt,
        "firmware": firmware,
        "disks": [{"name": "disk-0", "limit": str(virtual_size), "requested": str(actual_size)}],
        "providerItemID": digest,
        "providerContentVersion": digest,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Imported", "lastTransitionTime": now,
            "message": f"{fmt} disk of {virtual_size} bytes stored as {digest}"}],
    }
    os_fields = {key: value for key, value in os_info.items() if value}
    if os_fields:
        status["osInfo"] = os_fields
    return status


async def publish(client: Any, kind: str, name: str, *, namespace: str | None, digest: str,
                  status: dict[str, Any], kernel_boot: bool = False) -> dict[str, Any]:
    """Create or update the image object, then write its status. A
    kernel-boot image (its own kernel, see kubevisor.runtime.qemu.kernelboot)
    carries the boot annotation; an update to another image removes it."""
    from kubevisor.client import AlreadyExistsError, ConflictError
    from kubevisor.runtime.qemu.kernelboot import BOOT_ANNOTATION, BOOT_KERNEL
    from kubevisor.runtime.qemu.library import DIGEST_ANNOTATION, DIGEST_LABEL

    annotations: dict[str, str | None] = {DIGEST_ANNOTATION: digest,
                                          BOOT_ANNOTATION: BOOT_KERNEL if kernel_boot else None}
    meta: dict[str, Any] = {"name": name,
                            "annotations": {k: v for k, v in annotations.items() if v},
                            "labels": {DIGEST_LABEL: digest.removeprefix("sha256:")[:16]}}
    if namespace:
        meta["namespace"] = namespace
    try:
        obj = await client.create({"apiVersion": API_VERSION, "kind": kind, "metadata": meta,
                                   "spec": {}}, field_manager=FIELD_MANAGER)
    except AlreadyExistsError:
        obj = None
    if obj is None:  # a merge patch: a null annotation is removed
        obj = await client.patch(API_VERSION, kind, name, {"metadata": {
            "annotations": annotations, "labels": meta["labels"]}},
            namespace=namespace, field_manager=FIELD_MANAGER)
    for attempt in range(5):
        old = (obj.get("status") or {}).get("conditions") or []
        ready = next((c for c in old if c.get("type") == "Ready"), None)
        if ready and ready.get("status") == "True":  # keep when it last changed
            status["conditions"][0]["lastTransitionTime"] = ready["lastTransitionTime"]
        obj["status"] = status
        try:
            return dict(await client.update_status(obj, field_manager=FIELD_MANAGER))
        except ConflictError:  # someone wrote in between: read and try again
            if attempt == 4:
                raise
            obj = await client.get(API_VERSION, kind, name, namespace=namespace)
    raise AssertionError("unreachable")
