"""``kubevisor image import``: a real oci-archive (umoci-built, skopeo-copied)
lands in the data dir's image store, named; bad input is one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.images import build, busybox_recipe, oci_archive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the image store needs root")


def _kubevisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubevisor.cli.main", *args],
                          capture_output=True, text=True, timeout=120)


def test_import_archive_into_the_store(tmp_path: Path) -> None:
    archive = oci_archive(build(busybox_recipe()), tmp_path / "busybox.tar", "busybox:import")
    result = _kubevisor("image", "import", str(archive), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    ref, image_id = result.stdout.strip().split("\t")
    assert ref.endswith("busybox:import") and image_id.startswith("sha256:")

    from kubevisor.runtime.images import LocalImageStore

    image = LocalImageStore(tmp_path / "data" / "images").get("busybox:import")
    assert image is not None and image.id == image_id


def test_import_errors_are_one_line(tmp_path: Path) -> None:
    result = _kubevisor("image", "import", str(tmp_path / "missing.tar"))
    assert (result.returncode, result.stderr.strip()) == (1, f"error: {tmp_path}/missing.tar: no such file")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar")
    result = _kubevisor("image", "import", str(junk), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
