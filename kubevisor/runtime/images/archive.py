"""OCI image layout archives: the tar ``skopeo copy ... oci-archive:FILE.tar:name:tag`` writes.

:func:`ingest_oci_archive` streams the tar once: every ``blobs/sha256/<hex>``
entry goes into the blob store (checked against its name; blobs already
present are skipped), and ``index.json`` is read for the images it lists,
each named by its ``org.opencontainers.image.ref.name`` annotation. The
store then unpacks those images and records their names
(:meth:`~kubevisor.runtime.images.store.LocalImageStore.import_archive`,
behind ``kubevisor image import FILE.tar``).
"""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path

from kubevisor.runtime.errors import ImageFormatError
from kubevisor.runtime.images.blobs import BlobStore
from kubevisor.runtime.images.manifest import Descriptor, parse_index
from kubevisor.runtime.types import Progress

_CHUNK = 1 << 20


def ingest_oci_archive(path: Path, blobs: BlobStore, *, progress: Progress | None = None) -> list[Descriptor]:  # fmt: skip
    """Copy the archive's blobs into ``blobs``; the entries of its index.json.
    Blocking: run it in a thread."""
    index: bytes | None = None
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = posixpath.normpath(member.name.lstrip("/"))
                if name == "index.json" and member.isreg():
                    source = tar.extractfile(member)
                    assert source is not None
                    index = source.read()
                    continue
                parts = name.split("/")
                if len(parts) != 3 or parts[0] != "blobs" or not member.isreg():
                    continue
                if parts[1] != "sha256":
                    raise ImageFormatError(f"{path}: blob {name}: only sha256 digests are supported")
                digest = f"sha256:{parts[2]}"
                if blobs.has(digest):
                    continue
                source = tar.extractfile(member)
                assert source is not None
                with blobs.writer(digest) as writer:
                    while chunk := source.read(_CHUNK):
                        writer.write(chunk)
                        if progress is not None:
                            progress(digest, writer.written, member.size)
    except (tarfile.TarError, EOFError) as exc:
        raise ImageFormatError(f"{path}: not a valid tar archive: {exc}") from exc
    if index is None:
        raise ImageFormatError(f"{path}: no index.json: not an OCI image layout archive")
    return parse_index(index)
