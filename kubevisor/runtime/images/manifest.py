"""Manifests, indexes and image configs: the JSON documents of an image.

Pure parsing, no I/O. Understands the OCI image manifest and index and
Docker's schema2 manifest and manifest list (the four formats registries
serve today; Docker schema1 is refused). :func:`select_platform` picks this
host's platform (linux/amd64 on x86-64) from an index, as containerd does.
Called by the registry client (what to ask for, what came back), by the
store (``get`` rebuilds an :class:`~kubevisor.runtime.types.Image` from the
stored blobs) and by archive import. Malformed documents raise
:class:`~kubevisor.runtime.errors.ImageFormatError`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubevisor.runtime.errors import ImageFormatError
from kubevisor.runtime.types import ImageConfig

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")  # fmt: skip
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
#: The Accept header of a manifest request, most wanted first.
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip


def host_platform() -> tuple[str, str]:
    """(os, architecture) of this host in OCI (Go) spelling."""
    machine = platform.machine().lower()
    return "linux", _GOARCH.get(machine, machine)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """``digest`` if it is a well-formed sha256 digest (the only algorithm
    the store keeps), else :class:`ImageFormatError`."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise ImageFormatError(f"unsupported or malformed digest {digest!r}")
    return digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A pointer to a blob: media type, digest, size, annotations, platform."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str]
    platform: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: Any) -> Descriptor:
        if not isinstance(raw, dict):
            raise ImageFormatError(f"descriptor is not an object: {raw!r}")
        size = raw.get("size", 0)
        if not isinstance(size, int) or size < 0:
            raise ImageFormatError(f"descriptor has a bad size: {raw!r}")
        return cls(
            media_type=str(raw.get("mediaType", "")),
            digest=check_digest(raw.get("digest", "")),
            size=size,
            annotations=dict(raw.get("annotations") or {}),
            platform=dict(raw.get("platform") or {}),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """One platform's image: its config blob and its layer blobs, bottom first."""

    config: Descriptor
    layers: Sequence[Descriptor]


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ImageFormatError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return doc


def media_type_of(body: bytes, content_type: str = "") -> str:
    """The media type of a manifest document: its own ``mediaType`` field,
    else the HTTP Content-Type, else guessed from its shape."""
    doc = _load(body, "manifest")
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    content_type = content_type.split(";")[0].strip()
    if content_type in INDEX_TYPES + MANIFEST_TYPES + DOCKER_SCHEMA1:
        return content_type
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[0]
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def is_index(media_type: str) -> bool:
    if media_type in DOCKER_SCHEMA1:
        raise ImageFormatError(
            "Docker Image Format v1 and Docker Image manifest version 2, schema 1 "
            "are not supported (media type " + media_type + ")"
        )
    if media_type not in INDEX_TYPES + MANIFEST_TYPES:
        raise ImageFormatError(f"unsupported manifest media type {media_type!r}")
    return media_type in INDEX_TYPES


def parse_index(body: bytes) -> list[Descriptor]:
    doc = _load(body, "image index")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise ImageFormatError("image index has no manifests list")
    return [Descriptor.parse(m) for m in manifests]


def select_platform(entries: Sequence[Descriptor]) -> Descriptor | None:
    """The entry for this host's platform (an entry without a platform counts
    as a match, as in OCI layouts written by umoci or skopeo), or None."""
    want_os, want_arch = host_platform()
    unplatformed = None
    for entry in entries:
        if entry.media_type in INDEX_TYPES:
            continue
        if not entry.platform:
            unplatformed = unplatformed or entry
            continue
        if entry.platform.get("os") == want_os and entry.platform.get("architecture") == want_arch:
            return entry
    return unplatformed


def parse_manifest(body: bytes) -> Manifest:
    doc = _load(body, "image manifest")
    if doc.get("schemaVersion") != 2:
        raise ImageFormatError(f"image manifest has schemaVersion {doc.get('schemaVersion')!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageFormatError("image manifest has no layers list")
    return Manifest(config=Descriptor.parse(doc.get("config")),
                    layers=[Descriptor.parse(layer) for layer in layers])  # fmt: skip


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageFormatError(f"image config {what} is not a list of strings")
    return tuple(value)


def parse_config(body: bytes) -> tuple[ImageConfig, list[str]]:
    """The runnable part of an image config and its ``rootfs.diff_ids``."""
    doc = _load(body, "image config")
    conf = doc.get("config") or {}
    rootfs = doc.get("rootfs") or {}
    if not isinstance(conf, dict) or not isinstance(rootfs, dict):
        raise ImageFormatError("image config has a malformed config or rootfs")
    diff_ids = [check_digest(d) for d in _strings(rootfs.get("diff_ids"), "rootfs.diff_ids")]
    ports = conf.get("ExposedPorts") or {}
    config = ImageConfig(
        entrypoint=_strings(conf.get("Entrypoint"), "Entrypoint"),
        cmd=_strings(conf.get("Cmd"), "Cmd"),
        env=_strings(conf.get("Env"), "Env"),
        working_dir=str(conf.get("WorkingDir") or ""),
        user=str(conf.get("User") or ""),
        exposed_ports=tuple(sorted(ports)) if isinstance(ports, dict) else (),
    )
    return config, diff_ids
