"""Image references, parsed and normalized as Docker and kubelet do.

``busybox`` means ``docker.io/library/busybox:latest``; ``host:port/repo:tag``
names another registry; ``name@sha256:<hex>`` pins a digest (a tag beside a
digest is kept for display, the digest wins). The grammar is the one of
github.com/distribution/reference (lowercase path components, optional
domain with port, tag up to 128 characters, a total name of at most 255).

Called by the image store (:mod:`.store`) for every ``pull``/``get`` and by
archive import for the ``org.opencontainers.image.ref.name`` annotations.
A bad reference raises :class:`InvalidImageNameError` worded as kubelet's
``InvalidImageName`` waiting reason.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from kubevisor.runtime.errors import ImageError

DEFAULT_DOMAIN = "docker.io"
#: Where docker.io's API actually answers.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
_LEGACY_DOMAINS = {"index.docker.io": DEFAULT_DOMAIN, "registry-1.docker.io": DEFAULT_DOMAIN}
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


class InvalidImageNameError(ImageError):
    """The image reference does not parse (kubelet's ``InvalidImageName``).

    Not an :class:`~kubevisor.runtime.errors.ImagePullError`: retrying cannot
    help, so the node agent reports ``InvalidImageName`` rather than
    ``ErrImagePull``.
    """

    def __init__(self, image: str, reason: str) -> None:
        self.image = image
        self.reason = reason
        quoted = json.dumps(image)
        super().__init__(
            f"Failed to apply default image tag {quoted}: couldn't parse image name "
            f"{quoted}: {reason}"
        )


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalized reference: ``domain`` ("docker.io", "127.0.0.1:5000"),
    ``path`` ("library/busybox"), ``tag`` (defaulted to "latest" when there
    is no digest) and ``digest`` ("sha256:..." or "")."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """``domain/path``: the repository, fully qualified."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """host[:port] of the registry's HTTP API."""
        return DOCKER_HUB_API_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def insecure(self) -> bool:
        """Plain HTTP is used for loopback registries (as containerd and kubelet
        allow them without TLS); HTTPS for everything else."""
        return is_loopback_host(self.api_host)

    @property
    def object(self) -> str:
        """What the manifests endpoint is asked for: the digest, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        """The canonical string (containerd's image name):
        ``docker.io/library/busybox:latest`` or ``name@sha256:...``."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (no tag)."""
        return Reference(self.domain, self.path, "", digest)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1, with or without a port."""
    if host.startswith("["):
        bare = host[1 : host.find("]")] if "]" in host else host[1:]
    else:
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def _split_domain(name: str) -> tuple[str, str]:
    """distribution/reference's splitDockerDomain: the first component is a
    domain only when it has a dot or a port, is ``localhost``, or has
    uppercase letters (which paths cannot)."""
    first, sep, rest = name.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and first == first.lower()
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    domain = _LEGACY_DOMAINS.get(domain, domain)
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


def parse_reference(image: str) -> Reference:
    """Parse ``image`` as kubelet does (ParseNormalizedNamed + the default tag);
    raises :class:`InvalidImageNameError`."""
    if not image or image != image.strip():
        raise InvalidImageNameError(image, "invalid reference format")
    if _HEX64_RE.match(image):
        raise InvalidImageNameError(
            image,
            f"invalid repository name ({image}), cannot specify 64-byte hexadecimal strings",
        )
    # Split off the digest, then the tag (a colon after the last slash), then
    # the domain, so each part is checked by its own rule.
    remainder, at, digest = image.partition("@")
    name, colon, tag = remainder, "", ""
    if remainder.rfind(":") > remainder.rfind("/"):
        name, colon, tag = remainder.rpartition(":")
    domain, path = _split_domain(name)
    if (
        not _DOMAIN_RE.match(domain)
        or (colon and not _TAG_RE.match(tag))
        or (at and not _DIGEST_RE.match(digest))
    ):
        raise InvalidImageNameError(image, "invalid reference format")
    if not _PATH_RE.match(path):
        if _PATH_RE.match(path.lower()):
            raise InvalidImageNameError(
                image, "invalid reference format: repository name must be lowercase"
            )
        raise InvalidImageNameError(image, "invalid reference format")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidImageNameError(
            image,
            f"invalid reference format: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters",
        )
    if at and not _SHA256_RE.match(digest):
        algorithm, _, encoded = digest.partition(":")
        if algorithm != "sha256":
            reason = f"unsupported digest algorithm: {algorithm}"
        elif len(encoded) != 64:
            reason = "invalid checksum digest length"
        else:
            reason = "invalid checksum digest format"
        raise InvalidImageNameError(image, reason)
    return Reference(domain=domain, path=path, tag=tag or ("" if at else DEFAULT_TAG), digest=digest)


def registry_key(key: str) -> str:
    """Normalize a credentials key (as in a ``.dockerconfigjson``: a host,
    ``https://index.docker.io/v1/``, ``host/namespace``) to ``domain[/path]``."""
    key = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key.strip()).rstrip("/")
    host, _, path = key.partition("/")
    host = _LEGACY_DOMAINS.get(host, host)
    if host == DEFAULT_DOMAIN and path in {"v1", "v2"}:
        path = ""
    return f"{host}/{path}" if path else host
