"""Image references parse and normalize as Docker and kubelet do, and bad
ones fail with kubelet's InvalidImageName wording."""

from __future__ import annotations

import pytest

from kubevisor.runtime.images.reference import (
    InvalidImageNameError,
    is_loopback_host,
    parse_reference,
    registry_key,
)
from kubevisor.runtime.images.store import pick_auth
from kubevisor.runtime.types import RegistryAuth

D = "sha256:" + "ab" * 32

VALID = [
    # image, domain, path, tag, digest, canonical
    ("busybox", "docker.io", "library/busybox", "latest", "", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", "", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io", "library/busybox", "latest", "", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", "", None),
    ("index.docker.io/library/busybox:1", "docker.io", "library/busybox", "1", "", None),
    ("foo/bar", "docker.io", "foo/bar", "latest", "", "docker.io/foo/bar:latest"),
    ("quay.io/foo/bar:v1.0_rc-2", "quay.io", "foo/bar", "v1.0_rc-2", "", None),
    ("127.0.0.1:5000/x:1", "127.0.0.1:5000", "x", "1", "", "127.0.0.1:5000/x:1"),
    ("localhost/x", "localhost", "x", "latest", "", None),
    ("localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", "", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", "", None),  # a tag, as in Docker
    (f"my-registry.local:8443/team/app@{D}", "my-registry.local:8443", "team/app", "", D,
     f"my-registry.local:8443/team/app@{D}"),
    (f"busybox:1@{D}", "docker.io", "library/busybox", "1", D, f"docker.io/library/busybox@{D}"),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", "", None),
    ("a__b/c.d-e---f", "docker.io", "a__b/c.d-e---f", "latest", "", None),
    ("Registry.Example.com/app", "Registry.Example.com", "app", "latest", "", None),
]  # fmt: skip


@pytest.mark.parametrize(("image", "domain", "path", "tag", "digest", "canonical"), VALID)
def test_valid(image: str, domain: str, path: str, tag: str, digest: str, canonical: str | None) -> None:  # fmt: skip
    ref = parse_reference(image)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    if canonical is not None:
        assert str(ref) == canonical
    # the canonical form parses back to itself
    assert str(parse_reference(str(ref))) == str(ref)


INVALID = [
    ("Busybox", "invalid reference format: repository name must be lowercase"),
    ("quay.io/Foo/bar", "invalid reference format: repository name must be lowercase"),
    ("busybox:", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("-busybox", "invalid reference format"),
    ("busybox/", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("", "invalid reference format"),
    (" busybox", "invalid reference format"),
    ("busybox:has space", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("ab" * 32, f"invalid repository name ({'ab' * 32}), cannot specify 64-byte hexadecimal strings"),
    ("quay.io/" + "a" * 250, "invalid reference format: repository name must not be more than 255 characters"),
    ("x@md5:" + "0" * 32, "unsupported digest algorithm: md5"),
    ("x@sha256:" + "0" * 40, "invalid checksum digest length"),
    ("x@sha256:" + "A" * 64, "invalid checksum digest format"),
]  # fmt: skip


@pytest.mark.parametrize(("image", "reason"), INVALID)
def test_invalid(image: str, reason: str) -> None:
    with pytest.raises(InvalidImageNameError) as info:
        parse_reference(image)
    assert info.value.reason == reason
    quoted = '"' + image + '"'
    assert str(info.value) == (
        f"Failed to apply default image tag {quoted}: couldn't parse image name {quoted}: {reason}"
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("127.1.2.3", True), ("localhost", True), ("localhost:80", True),
     ("[::1]:5000", True), ("10.0.0.1:5000", False), ("quay.io", False), ("registry-1.docker.io", False),
     ("localhost.example.com", False)],
)  # fmt: skip
def test_loopback_registries_are_plain_http(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
    assert parse_reference(f"{host}/x").insecure is loopback


def test_docker_hub_api_host() -> None:
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
    assert parse_reference("127.0.0.1:5000/x").api_host == "127.0.0.1:5000"


@pytest.mark.parametrize(
    ("key", "normalized"),
    [("https://index.docker.io/v1/", "docker.io"), ("docker.io", "docker.io"),
     ("http://127.0.0.1:5000", "127.0.0.1:5000"), ("127.0.0.1:5000/team", "127.0.0.1:5000/team"),
     ("registry-1.docker.io", "docker.io")],
)  # fmt: skip
def test_registry_keys(key: str, normalized: str) -> None:
    assert registry_key(key) == normalized


def test_credentials_are_picked_by_registry_longest_prefix_first() -> None:
    team, host, hub = RegistryAuth("team"), RegistryAuth("host"), RegistryAuth("hub")
    auth = {"127.0.0.1:5000/team": team, "http://127.0.0.1:5000/": host, "https://index.docker.io/v1/": hub}
    assert pick_auth(auth, parse_reference("127.0.0.1:5000/team/app")) is team
    assert pick_auth(auth, parse_reference("127.0.0.1:5000/teamx/app")) is host
    assert pick_auth(auth, parse_reference("busybox")) is hub
    assert pick_auth(auth, parse_reference("127.0.0.1:5001/app")) is None
    assert pick_auth(None, parse_reference("busybox")) is None
