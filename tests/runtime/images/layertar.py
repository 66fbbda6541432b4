"""Hand-made layer tars and OCI layout archives for the layer and import
tests (umoci would refuse to write the malicious ones)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] | None = None


def layer_tar(entries: Sequence[Entry]) -> bytes:
    """An uncompressed tar of ``entries`` in order (PAX format)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = e.kind
            info.mode, info.uid, info.gid = e.mode, e.uid, e.gid
            info.linkname = e.linkname
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.mtime = 1_700_000_000
            if e.pax:
                info.pax_headers = dict(e.pax)
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layout_archive(path: Path, layers: Sequence[bytes], *, ref_name: str, cmd: Sequence[str] = ("sh",)) -> str:  # fmt: skip
    """Write an OCI image layout tar with one image of gzip ``layers``
    (uncompressed tars, bottom first) named ``ref_name``; its manifest digest."""
    blobs: dict[str, bytes] = {}
    descriptors = []
    for raw in layers:
        packed = gzip.compress(raw, mtime=0)
        blobs[sha256(packed)] = packed
        descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": sha256(packed), "size": len(packed)})  # fmt: skip
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": list(cmd)},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(raw) for raw in layers]}}).encode()  # fmt: skip
    blobs[sha256(config)] = config
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(config), "size": len(config)},
                           "layers": descriptors}).encode()  # fmt: skip
    blobs[sha256(manifest)] = manifest
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}).encode()  # fmt: skip
    with tarfile.open(path, "w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index}
        files |= {f"blobs/sha256/{d.removeprefix('sha256:')}": b for d, b in blobs.items()}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sha256(manifest)
