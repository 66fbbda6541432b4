"""Pulls from a real docker-registry on loopback: content addressing, no
re-download, one download per blob under concurrency, kubelet-like errors,
HTTP Basic auth, and platform selection from an image index."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from kubevisor.runtime.errors import ImageNotFoundError, ImagePullError
from kubevisor.runtime.images import InvalidImageNameError, LocalImageStore
from kubevisor.runtime.types import RegistryAuth
from tests.support.images import BuiltImage
from tests.support.registry import AUTH_PASSWORD, AUTH_USER, Registry, push


def _manifest(image: BuiltImage) -> dict:
    hex_ = image.manifest_digest().removeprefix("sha256:")
    return json.loads((image.layout / "blobs" / "sha256" / hex_).read_text())


def _blob_digests(image: BuiltImage) -> set[str]:
    manifest = _manifest(image)
    return {manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}


def _wait_blob_gets(reg: Registry, name: str, count: int, timeout: float = 5.0) -> list[str]:
    """The registry logs a request after answering it: wait for ``count`` lines."""
    deadline = time.monotonic() + timeout
    while len(gets := reg.blob_gets(name)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return gets


async def test_pull_lands_content_addressed(store: LocalImageStore, registry: Registry,
                                            busybox_image: BuiltImage, repo: str) -> None:  # fmt: skip
    ref = push(busybox_image, registry, name=repo)
    seen: list[tuple[str, int, int | None]] = []
    image = await store.pull(ref, progress=lambda what, done, total: seen.append((what, done, total)))

    assert image.ref == ref
    assert image.id == busybox_image.config_digest()
    assert image.digest == busybox_image.manifest_digest()
    assert image.config.cmd == ("sh",)
    wanted = _blob_digests(busybox_image) | {image.digest}
    for digest in wanted:
        path = store.root / "blobs" / "sha256" / digest.removeprefix("sha256:")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.removeprefix("sha256:")
    config = json.loads((store.root / "blobs" / "sha256" / image.id.removeprefix("sha256:")).read_bytes())
    for diff_id in config["rootfs"]["diff_ids"]:
        assert (store.root / "layers" / diff_id.removeprefix("sha256:") / "bin" / "busybox").is_file()
    refs = json.loads((store.root / "refs.json").read_text())
    assert refs[ref]["digest"] == image.digest
    assert refs[f"{registry.host}/{repo}@{image.digest}"]["digest"] == image.digest
    # progress reached each blob's full size
    layer = _manifest(busybox_image)["layers"][0]
    assert (layer["digest"], layer["size"], layer["size"]) in seen

    assert store.get(ref) == image
    by_digest = store.get(f"{registry.host}/{repo}@{image.digest}")
    assert by_digest is not None and by_digest.id == image.id
    assert store.get(f"{registry.host}/{repo}:other") is None
    # a new store over the same directory knows the image without the network
    again = LocalImageStore(store.root)
    assert again.get(ref) == image
    assert [i.ref for i in again.list()] == sorted([ref, f"{registry.host}/{repo}@{image.digest}"])


async def test_second_pull_fetches_no_blob(store: LocalImageStore, registry: Registry,
                                           httpd_image: BuiltImage, repo: str) -> None:  # fmt: skip
    ref = push(httpd_image, registry, name=repo)
    first = await store.pull(ref)
    blobs = _blob_digests(httpd_image)
    assert sorted(_wait_blob_gets(registry, repo, len(blobs))) == sorted(blobs)
    mtimes = {p: p.stat().st_mtime_ns for p in (store.root / "blobs" / "sha256").iterdir()}

    second = await store.pull(ref)
    by_digest = await store.pull(f"{registry.host}/{repo}@{first.digest}")
    time.sleep(0.3)  # let the registry log anything it served
    assert second == first and by_digest.id == first.id
    # by digest, the store answers without asking the registry at all
    assert not [p for _, p, _ in registry.requests() if p.endswith(f"/manifests/{first.digest}")]
    assert sorted(registry.blob_gets(repo)) == sorted(blobs)
    assert {p: p.stat().st_mtime_ns for p in (store.root / "blobs" / "sha256").iterdir()} == mtimes


async def test_concurrent_pulls_download_each_blob_once(store: LocalImageStore, registry: Registry,
                                                        httpd_image: BuiltImage, repo: str) -> None:  # fmt: skip
    ref = push(httpd_image, registry, name=repo)
    other = push(httpd_image, registry, name=repo, tag="same-content")
    images = await asyncio.gather(*(store.pull(ref) for _ in range(4)), store.pull(other))
    assert len({i.id for i in images}) == 1
    blobs = _blob_digests(httpd_image)
    gets = _wait_blob_gets(registry, repo, len(blobs))
    time.sleep(0.3)
    assert Counter(registry.blob_gets(repo)) == Counter(blobs)  # each exactly once
    assert not list((store.root / "tmp").iterdir())
    assert not list((store.root / "blobs" / ".tmp").iterdir())
    del gets


async def test_missing_tag_is_not_found(store: LocalImageStore, registry: Registry,
                                        busybox_image: BuiltImage, repo: str) -> None:  # fmt: skip
    push(busybox_image, registry, name=repo)
    ref = registry.ref(repo, "nope")
    with pytest.raises(ImageNotFoundError) as info:
        await store.pull(ref)
    assert str(info.value) == (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": {ref}: not found'
    )
    with pytest.raises(ImageNotFoundError):
        await store.pull(registry.ref("no/such/repo", "1"))
    assert store.get(ref) is None


async def test_unreachable_registry(store: LocalImageStore) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        ref = f"127.0.0.1:{port}/x:1"
        with pytest.raises(ImagePullError) as info:
            await store.pull(ref)
    message = str(info.value)
    assert message.startswith(f'failed to pull and unpack image "{ref}": failed to resolve reference')
    assert f'failed to do request: Get "http://127.0.0.1:{port}/v2/x/manifests/1"' in message


async def test_invalid_name_is_not_a_pull_error(store: LocalImageStore) -> None:
    with pytest.raises(InvalidImageNameError) as info:
        await store.pull("Not/Valid")
    assert not isinstance(info.value, ImagePullError)
    assert "repository name must be lowercase" in str(info.value)


async def test_basic_auth(store: LocalImageStore, auth_registry: Registry,
                          busybox_image: BuiltImage, repo: str) -> None:  # fmt: skip
    ref = push(busybox_image, auth_registry, name=repo)
    with pytest.raises(ImagePullError) as info:
        await store.pull(ref)
    assert str(info.value) == (
        f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": pull access '
        "denied, repository does not exist or may require authorization: server message: "
        "unauthorized: authentication required"
    )
    with pytest.raises(ImagePullError, match="unauthorized"):
        await store.pull(ref, auth={auth_registry.host: RegistryAuth(AUTH_USER, "wrong")})
    assert store.get(ref) is None

    # keys as a .dockerconfigjson writes them
    image = await store.pull(ref, auth={f"http://{auth_registry.host}/": RegistryAuth(AUTH_USER, AUTH_PASSWORD)})  # fmt: skip
    assert image.id == busybox_image.config_digest()
    assert store.get(ref) == image


async def test_bearer_token_auth(store: LocalImageStore, token_registry: Registry,
                                 busybox_image: BuiltImage, repo: str) -> None:  # fmt: skip
    """The registry answers 401 with a Bearer challenge; the client fetches a
    token from the realm (anonymously, or with the credentials as Basic auth)."""
    tokens = token_registry.token_server
    assert tokens is not None
    ref = push(busybox_image, token_registry, name=repo)
    with pytest.raises(ImagePullError) as info:
        await store.pull(ref)  # an anonymous token grants nothing here
    assert "pull access denied, repository does not exist or may require authorization" in str(info.value)

    before = tokens.issued
    image = await store.pull(ref, auth={token_registry.host: RegistryAuth(AUTH_USER, AUTH_PASSWORD)})
    assert image.id == busybox_image.config_digest()
    assert tokens.issued == before + 1  # one token serves the manifest and every blob


def _registry_manifest(reg: Registry, repo: str, reference: str) -> tuple[str, dict, str]:
    """(content type, document, digest) of a manifest as the registry serves it."""
    accept = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.list.v2+json, "
              "application/vnd.docker.distribution.manifest.v2+json")  # fmt: skip
    answer = httpx.get(f"{reg.url}/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
    answer.raise_for_status()
    return answer.headers["content-type"], answer.json(), "sha256:" + hashlib.sha256(answer.content).hexdigest()


async def test_docker_schema2_manifest(store: LocalImageStore, registry: Registry,
                                       httpd_image: BuiltImage, repo: str) -> None:  # fmt: skip
    ref = push(httpd_image, registry, name=repo, docker_format=True)
    content_type, _, digest = _registry_manifest(registry, repo, "1")
    assert content_type == "application/vnd.docker.distribution.manifest.v2+json"
    image = await store.pull(ref)
    assert image.config.cmd == ("/usr/local/bin/httpd-start",)
    assert image.config.exposed_ports == ("80/tcp",)
    assert image.digest == digest
    assert store.get(ref) == image


@pytest.mark.parametrize("docker_format", [False, True], ids=["oci-index", "docker-manifest-list"])
async def test_index_picks_linux_amd64(store: LocalImageStore, registry: Registry, tmp_path: Path,
                                       busybox_image: BuiltImage, httpd_image: BuiltImage, repo: str,
                                       docker_format: bool) -> None:  # fmt: skip
    """An index whose linux/arm64 entry is httpd and linux/amd64 entry is
    busybox, pushed with ``skopeo copy --all``: the pull takes busybox."""
    layout = tmp_path / "multi"
    shutil.copytree(busybox_image.layout, layout)
    for blob in (httpd_image.layout / "blobs" / "sha256").iterdir():
        shutil.copy(blob, layout / "blobs" / "sha256" / blob.name)

    def entry(image: BuiltImage, arch: str) -> dict:
        hex_ = image.manifest_digest().removeprefix("sha256:")
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.manifest_digest(),
                "size": (image.layout / "blobs" / "sha256" / hex_).stat().st_size,
                "platform": {"os": "linux", "architecture": arch}}  # fmt: skip

    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [entry(httpd_image, "arm64"), entry(busybox_image, "amd64")]}).encode()  # fmt: skip
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    (layout / "blobs" / "sha256" / index_digest.removeprefix("sha256:")).write_bytes(index)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest, "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))  # fmt: skip
    ref = push(layout, registry, name=repo, src_tag="multi", all_platforms=True, docker_format=docker_format)  # fmt: skip
    content_type, pushed, pushed_digest = _registry_manifest(registry, repo, "multi")
    assert content_type == ("application/vnd.docker.distribution.manifest.list.v2+json" if docker_format
                            else "application/vnd.oci.image.index.v1+json")  # fmt: skip

    image = await store.pull(ref)
    # the name's digest (the index), as `docker pull` shows it
    assert image.digest == pushed_digest
    assert (pushed_digest == index_digest) is not docker_format
    amd64 = next(m for m in pushed["manifests"] if m["platform"]["architecture"] == "amd64")
    hex_ = amd64["digest"].removeprefix("sha256:")
    assert (store.root / "blobs" / "sha256" / hex_).is_file()
    assert image.config.cmd == ("sh",)
    if not docker_format:
        assert image.id == busybox_image.config_digest()
    httpd_layers = {layer["digest"] for layer in _manifest(httpd_image)["layers"]}
    busybox_layers = {layer["digest"] for layer in _manifest(busybox_image)["layers"]}
    assert not set(registry.blob_gets(repo)) & (httpd_layers - busybox_layers)
    assert store.get(ref) == image
