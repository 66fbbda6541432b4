"""Unpacking layers: what a layer holds lands as is (owners, modes, links,
devices, xattrs), OCI whiteouts become overlayfs whiteouts, diff_ids are
checked, and entries that would escape the layer are refused — also through
the store's archive import, which then records nothing."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from kubevisor.runtime.errors import ImageFormatError
from kubevisor.runtime.images import LocalImageStore
from kubevisor.runtime.images.layers import OPAQUE_XATTR, unpack_layer
from tests.runtime.images.conftest import needs_root
from tests.runtime.images.layertar import Entry, layer_tar, oci_layout_archive, sha256


def _unpack(tmp_path: Path, raw: bytes, *, compress: bool = False, diff_id: str | None = None) -> Path:
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(raw) if compress else raw)
    dest = tmp_path / "layer"
    dest.mkdir()
    unpack_layer(blob, dest, diff_id=diff_id or sha256(raw))
    return dest


@needs_root
@pytest.mark.parametrize("compress", [False, True], ids=["tar", "gzip"])
def test_entries_land_as_they_are(tmp_path: Path, compress: bool) -> None:
    raw = layer_tar([
        Entry("./", tarfile.DIRTYPE, mode=0o755),
        Entry("bin/", tarfile.DIRTYPE, mode=0o555),
        Entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=5678),
        Entry("bin/same", tarfile.LNKTYPE, linkname="bin/tool"),
        Entry("etc/abs", tarfile.SYMTYPE, linkname="/etc/passwd"),
        Entry("etc/up", tarfile.SYMTYPE, linkname="../../../../outside"),
        Entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        Entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
        Entry("cap", data=b"x", pax={"SCHILY.xattr.user.kubevisor": "yes"}),
    ])  # fmt: skip
    root = _unpack(tmp_path, raw, compress=compress)
    tool = os.stat(root / "bin" / "tool")
    assert (tool.st_uid, tool.st_gid, stat.S_IMODE(tool.st_mode)) == (1234, 5678, 0o4755)
    assert stat.S_IMODE(os.stat(root / "bin").st_mode) == 0o555
    assert os.stat(root / "bin" / "same").st_ino == tool.st_ino and tool.st_nlink == 2
    assert os.readlink(root / "etc" / "abs") == "/etc/passwd"  # kept, never followed
    assert os.readlink(root / "etc" / "up") == "../../../../outside"
    null = os.stat(root / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.stat(root / "run" / "fifo").st_mode)
    assert os.getxattr(root / "cap", "user.kubevisor") == b"yes"
    assert os.stat(root / "cap").st_mtime == 1_700_000_000


@needs_root
def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    raw = layer_tar([
        Entry("etc/.wh.gone"),
        Entry("data/", tarfile.DIRTYPE, mode=0o755),
        Entry("data/.wh..wh..opq"),
        Entry("data/new", data=b"new"),
    ])  # fmt: skip
    root = _unpack(tmp_path, raw)
    gone = os.lstat(root / "etc" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert not (root / "etc" / ".wh.gone").exists()
    assert os.getxattr(root / "data", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(root / "data")) == ["new"]


@pytest.mark.parametrize(
    "entries",
    [
        [Entry("../evil", data=b"x")],
        [Entry("a/../../evil", data=b"x")],
        [Entry("link", tarfile.SYMTYPE, linkname=".."), Entry("link/evil", data=b"x")],
        [Entry("link", tarfile.SYMTYPE, linkname="/tmp"), Entry("link/evil", data=b"x")],
        [Entry("evil", tarfile.LNKTYPE, linkname="../../etc/passwd")],
    ],
    ids=["dotdot", "nested-dotdot", "through-relative-symlink", "through-absolute-symlink", "hardlink-out"],
)
def test_path_traversal_is_refused(tmp_path: Path, entries: list[Entry]) -> None:
    box = tmp_path / "box"
    box.mkdir()
    with pytest.raises(ImageFormatError, match="path traversal"):
        _unpack(box, layer_tar(entries))
    assert not (tmp_path / "evil").exists() and not (box / "evil").exists()
    assert not Path("/tmp/evil").exists()


def test_absolute_names_stay_inside(tmp_path: Path) -> None:
    root = _unpack(tmp_path, layer_tar([Entry("/etc/x", data=b"x"), Entry("./a/./b/../c", data=b"c")]))
    assert (root / "etc" / "x").read_bytes() == b"x"
    assert (root / "a" / "c").read_bytes() == b"c"
    # stricter than Docker, which reads "/../y" as "/y"
    (tmp_path / "again").mkdir()
    with pytest.raises(ImageFormatError, match="path traversal"):
        _unpack(tmp_path / "again", layer_tar([Entry("/../y", data=b"y")]))


def test_diff_id_is_checked(tmp_path: Path) -> None:
    raw = layer_tar([Entry("a", data=b"a")])
    with pytest.raises(ImageFormatError, match="does not match diff_id"):
        _unpack(tmp_path, raw, compress=True, diff_id=sha256(b"something else"))


def test_layer_ending_after_file_data_is_read_but_truncated_data_is_not(tmp_path: Path) -> None:
    """umoci 0.4 ends a layer right after the last file's data (no padding,
    no end blocks); Go's tar reader accepts that, so do we. Cutting into the
    data itself is refused."""
    raw = layer_tar([Entry("d/", tarfile.DIRTYPE, mode=0o755), Entry("d/f", data=b"x" * 700)])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        data_end = tar.getmembers()[-1].offset_data + 700
    (tmp_path / "ok").mkdir()
    root = _unpack(tmp_path / "ok", raw[:data_end])
    assert (root / "d" / "f").read_bytes() == b"x" * 700
    with pytest.raises(ImageFormatError, match="truncated"):
        _unpack(tmp_path, raw[: data_end - 100])


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="not a valid tar archive"):
        _unpack(tmp_path, gzip.compress(b"\x00garbage" * 200), diff_id=sha256(b""))


async def test_import_refuses_a_traversing_layer(tmp_path: Path, store: LocalImageStore) -> None:
    archive = tmp_path / "evil.tar"
    oci_layout_archive(archive, [layer_tar([Entry("ok", data=b"ok")]),
                                 layer_tar([Entry("../../escaped", data=b"x")])], ref_name="evil:1")  # fmt: skip
    with pytest.raises(ImageFormatError) as info:
        await store.import_archive(str(archive))
    assert str(info.value).startswith(f'failed to import image archive "{archive}": layer sha256:')
    assert "path traversal" in str(info.value)
    assert store.get("evil:1") is None
    assert not (store.root.parent / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    assert not list((store.root / "tmp").iterdir())  # the half-unpacked layer is gone
    # the harmless layer may stay unpacked (it is content-addressed), the bad one never lands
    assert len(list((store.root / "layers").iterdir())) <= 1


async def test_import_of_a_hand_made_archive(tmp_path: Path, store: LocalImageStore) -> None:
    archive = tmp_path / "ok.tar"
    digest = oci_layout_archive(archive, [layer_tar([Entry("hello", data=b"hi")])], ref_name="127.0.0.1:5000/hello:v1")  # fmt: skip
    [image] = await store.import_archive(str(archive))
    assert (image.ref, image.digest) == ("127.0.0.1:5000/hello:v1", digest)
    assert store.get("127.0.0.1:5000/hello:v1") == image
    assert store.get(f"127.0.0.1:5000/hello@{digest}") is not None
