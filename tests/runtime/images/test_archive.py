"""``import_archive`` of OCI layout tars written by skopeo, and ``prune``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubevisor.runtime.errors import ImageError, ImageFormatError
from kubevisor.runtime.images import LocalImageStore
from tests.runtime.images.conftest import needs_root
from tests.support.images import BuiltImage, build, oci_archive, variant

pytestmark = needs_root


async def test_import_skopeo_oci_archive(tmp_path: Path, store: LocalImageStore, busybox_image: BuiltImage) -> None:  # fmt: skip
    archive = oci_archive(busybox_image, tmp_path / "busybox.tar", "busybox:1")
    seen: list[str] = []
    [image] = await store.import_archive(str(archive), progress=lambda what, done, total: seen.append(what))  # fmt: skip
    assert image.ref == "busybox:1"
    assert image.id == busybox_image.config_digest()
    assert image.digest == busybox_image.manifest_digest()
    assert image.config.cmd == ("sh",)
    assert seen  # blobs were reported as they were copied
    # the name is normalized as a pod's image field would be
    for ref in ("busybox:1", "docker.io/library/busybox:1", f"busybox@{image.digest}"):
        got = store.get(ref)
        assert got is not None and (got.ref, got.id) == (ref, image.id)
    assert store.get("busybox") is None  # :latest was not imported
    # importing again is harmless and copies nothing new
    seen.clear()
    [again] = await store.import_archive(str(archive), progress=lambda what, done, total: seen.append(what))  # fmt: skip
    assert again == image and seen == []


async def test_import_errors(tmp_path: Path, store: LocalImageStore) -> None:
    with pytest.raises(ImageError, match="No such file"):
        await store.import_archive(str(tmp_path / "missing.tar"))
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageFormatError, match="not a valid tar archive"):
        await store.import_archive(str(tmp_path / "junk.tar"))


async def test_prune_keeps_what_is_kept(tmp_path: Path, store: LocalImageStore, busybox_image: BuiltImage) -> None:  # fmt: skip
    other = build(variant(busybox_image.recipe, "2"))
    one = (await store.import_archive(str(oci_archive(busybox_image, tmp_path / "1.tar", "busybox:1"))))[0]  # fmt: skip
    two = (await store.import_archive(str(oci_archive(other, tmp_path / "2.tar", "busybox:2"))))[0]  # fmt: skip
    assert one.id != two.id
    layers = store.root / "layers"
    assert len(list(layers.iterdir())) == 2  # the busybox layer is shared, the variant adds one

    result = await store.prune({one.id, two.id})
    assert (result.refs, result.blobs, result.layers) == ([], 0, 0)

    dest = tmp_path / "c"
    root = await store.prepare_rootfs(one, str(dest))
    result = await store.prune({one.id})
    assert result.refs == sorted(["docker.io/library/busybox:2", f"docker.io/library/busybox@{two.digest}"])  # fmt: skip
    assert result.layers == 1 and result.blobs == 3  # manifest, config, top layer of the variant
    assert store.get("busybox:2") is None and store.get("busybox:1") == one
    assert Path(root, "bin", "busybox").is_file()  # the kept image's container still works
    await store.release_rootfs(str(dest))

    result = await store.prune(set())
    assert result.layers == 1 and result.bytes_freed > 0
    assert not list(layers.iterdir()) and not list((store.root / "blobs" / "sha256").iterdir())
    assert json.loads((store.root / "refs.json").read_text()) == {}
    # everything comes back from the archive
    [again] = await store.import_archive(str(tmp_path / "1.tar"))
    assert again.id == one.id and store.get("busybox:1") is not None
