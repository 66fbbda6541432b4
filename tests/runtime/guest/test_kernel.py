"""Where the guest kernel's .debs come from: the clone's cache, else a
machine-wide cache, so a fresh clone builds its guest without the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubevisor.runtime.guest import kernel
from kubevisor.runtime.qemu.errors import GuestImageError


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "machine"
    folder.mkdir()
    monkeypatch.setattr(kernel, "MACHINE_DEBS", folder)
    monkeypatch.setattr(kernel, "APT_ARCHIVES", tmp_path / "apt")
    return folder


def test_a_machine_cached_deb_is_copied_into_the_clone(tmp_path: Path, machine: Path) -> None:
    (machine / "linux-image-amd64_6.1.1-1_amd64.deb").write_bytes(b"old")
    (machine / "linux-image-amd64_6.1.2-1_amd64.deb").write_bytes(b"new")
    debs = tmp_path / "clone"
    debs.mkdir()
    got = kernel._download("linux-image-amd64", debs)
    assert got == debs / "linux-image-amd64_6.1.2-1_amd64.deb" and got.read_bytes() == b"new"
    assert not list(debs.glob(".*partial"))
    (machine / "linux-image-amd64_6.1.2-1_amd64.deb").unlink()
    assert kernel._download("linux-image-amd64", debs) == got  # the clone's copy wins now


def test_no_cache_and_no_apt_is_a_clear_error(tmp_path: Path, machine: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel.shutil, "which", lambda name: None)
    with pytest.raises(GuestImageError, match=r"not cached in .* and apt-get is missing"):
        kernel._download("linux-image-amd64", tmp_path)
