"""Container root filesystems: overlays of the shared layers (and copies
when overlayfs is not used), whiteouts honoured, writes kept per container,
nothing left mounted after release or after a failed prepare."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from kubevisor.runtime.errors import ImageError
from kubevisor.runtime.images import LocalImageStore
from kubevisor.runtime.images.rootfs import mount_points
from kubevisor.runtime.types import Image
from tests.runtime.images.conftest import needs_root
from tests.support.images import (
    BuiltImage,
    Files,
    Opaque,
    Recipe,
    Whiteout,
    build,
    httpd_recipe,
    oci_archive,
)

pytestmark = needs_root

WHITEOUT_RECIPE = Recipe(
    name="whiteouts",
    tag="1",
    layers=[
        Files({"etc/gone": "bye\n", "etc/kept": "kept\n", "data/a": "a\n", "data/sub/b": "b\n"}, busybox=True),
        Whiteout("/etc/gone"),
        Opaque("/data", {"c": "c\n"}),
    ],
    cmd=["sh"],
)


def _mounted_under(path: Path) -> list[str]:
    return sorted(m for m in mount_points() if m == str(path) or m.startswith(f"{path}/"))


def _tree_digest(root: Path) -> str:
    """A digest of names, types, modes and file contents under ``root``."""
    h = hashlib.sha256()
    for current, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files + dirs):
            p = Path(current) / name
            st = os.lstat(p)
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_uid}\n".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


async def _import(store: LocalImageStore, image: BuiltImage, tmp_path: Path, name: str) -> Image:
    [loaded] = await store.import_archive(str(oci_archive(image, tmp_path / f"{image.recipe.name}.tar", name)))  # fmt: skip
    return loaded


@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "copy"])
async def test_whiteouts_and_opaque_dirs(tmp_path: Path, overlay: bool) -> None:
    store = LocalImageStore(tmp_path / "images", overlay=None if overlay else False)
    image = await _import(store, build(WHITEOUT_RECIPE), tmp_path, "whiteouts:1")
    dest = tmp_path / "c1"
    root = Path(await store.prepare_rootfs(image, str(dest)))
    try:
        assert root == dest / "rootfs"
        assert bool(_mounted_under(dest)) is overlay
        assert not (root / "etc" / "gone").exists() and not os.path.lexists(root / "etc" / "gone")
        assert (root / "etc" / "kept").read_text() == "kept\n"
        assert sorted(os.listdir(root / "data")) == ["c"]
        assert (root / "bin" / "busybox").is_file()
        # the root is usable: run busybox in it
        out = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "echo hi > /tmp/x && cat /tmp/x /data/c && ls /etc"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert out.split("\n")[:2] == ["hi", "c"] and "gone" not in out
    finally:
        await store.release_rootfs(str(dest))
    assert not dest.exists() and not _mounted_under(dest)


async def test_writes_stay_in_the_container(tmp_path: Path, store: LocalImageStore, busybox_image: BuiltImage) -> None:  # fmt: skip
    image = await _import(store, busybox_image, tmp_path, "busybox:1")
    layers_dir = store.root / "layers"
    before = _tree_digest(layers_dir)
    one = Path(await store.prepare_rootfs(image, str(tmp_path / "one")))
    two = Path(await store.prepare_rootfs(image, str(tmp_path / "two")))
    try:
        (one / "new-file").write_text("mine")
        (one / "etc" / "passwd").write_text("changed\n")
        (one / "bin" / "busybox").unlink()
        assert (tmp_path / "one" / "upper" / "new-file").read_text() == "mine"
        assert not (two / "new-file").exists()
        assert (two / "etc" / "passwd").read_text().startswith("root:")
        assert (two / "bin" / "busybox").is_file()
        assert _tree_digest(layers_dir) == before  # the shared layers are untouched
        # both overlays stack the very same layer directories
        with open("/proc/self/mountinfo") as info:
            lowers = [line.split("lowerdir=")[1].split(",")[0] for line in info
                      if f" {one} " in line or f" {two} " in line]  # fmt: skip
        assert len(lowers) == 2 and lowers[0] == lowers[1]
        assert all(p.startswith(str(layers_dir)) for p in lowers[0].split(":"))
        # preparing again is a no-op that returns the same root
        assert await store.prepare_rootfs(image, str(tmp_path / "one")) == str(one)
        assert (one / "new-file").exists()
        assert _mounted_under(tmp_path / "one") == [str(one)]
    finally:
        await store.release_rootfs(str(tmp_path / "one"))
        await store.release_rootfs(str(tmp_path / "two"))
    assert not _mounted_under(tmp_path)
    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists()
    await store.release_rootfs(str(tmp_path / "one"))  # idempotent
    assert _tree_digest(layers_dir) == before


async def test_release_while_busy_detaches(tmp_path: Path, store: LocalImageStore, busybox_image: BuiltImage) -> None:  # fmt: skip
    image = await _import(store, busybox_image, tmp_path, "busybox:1")
    root = Path(await store.prepare_rootfs(image, str(tmp_path / "c")))
    with open(root / "etc" / "passwd"):  # an open file keeps the mount busy
        await store.release_rootfs(str(tmp_path / "c"))
        assert not _mounted_under(tmp_path)
    assert not (tmp_path / "c").exists()


async def test_failed_prepare_leaves_nothing(tmp_path: Path, store: LocalImageStore, busybox_image: BuiltImage) -> None:  # fmt: skip
    image = await _import(store, busybox_image, tmp_path, "busybox:1")
    for layer in (store.root / "layers").iterdir():
        layer.rename(store.root / "tmp" / layer.name)  # as if pruned
    with pytest.raises(ImageError, match="is missing; pull it again"):
        await store.prepare_rootfs(image, str(tmp_path / "c"))
    assert not (tmp_path / "c").exists() and not _mounted_under(tmp_path)

    # a store that does not use overlayfs copies the layers instead
    store_no_overlay = LocalImageStore(tmp_path / "images2", overlay=False)
    image2 = await _import(store_no_overlay, busybox_image, tmp_path, "busybox:1")
    root = Path(await store_no_overlay.prepare_rootfs(image2, str(tmp_path / "copy")))
    assert (root / "bin" / "busybox").is_file() and not _mounted_under(tmp_path)
    await store_no_overlay.release_rootfs(str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()


async def test_httpd_image_serves_its_hostname(tmp_path: Path, store: LocalImageStore) -> None:
    """The shared test image (tests/support/images.py) does what the e2e
    tests rely on: run in fresh net and UTS namespaces (loopback only), it
    serves a page naming its host and version on port 80."""
    image = await _import(store, build(httpd_recipe("7")), tmp_path, "httpd:7")
    assert image.config.exposed_ports == ("80/tcp",)
    root = await store.prepare_rootfs(image, str(tmp_path / "web"))
    try:
        script = ("mknod -m 666 /dev/null c 1 3; ip link set lo up; hostname web-1; "
                  f"{' '.join(image.config.cmd)} & for i in 1 2 3 4 5 6 7 8 9 10; do "
                  "wget -qO- http://127.0.0.1/ && break; sleep 0.2; done; kill $!")  # fmt: skip
        result = subprocess.run(["unshare", "--net", "--uts", "chroot", root, "/bin/sh", "-c", script],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert "<h1>web-1</h1><p>version 7</p>" in result.stdout, result.stderr
    finally:
        await store.release_rootfs(str(tmp_path / "web"))
