"""``kubevisor image add`` of a kernel-boot image (the test guest's disk
image: a FAT disk with its own kernel) on a real ``kubevisor up
--no-node``: the ClusterVirtualMachineImage is Ready, carries the boot
annotation and the osInfo of the image's boot.json (command-line options
added on top); republishing the name with a plain disk drops the
annotation."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubevisor.runtime.guest import build_test_disk_image
from kubevisor.runtime.qemu import kernelboot, library
from tests.runtime.qemu.guestvm import CACHE
from tests.support.server import running_server, unique

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("qemu-img", "mkfs.vfat", "mtype", "dpkg-deb")),
    reason="needs qemu-utils, dosfstools, mtools and dpkg-deb")]


def _image_add(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubevisor.cli.main", "image", "add", *args],
                          capture_output=True, text=True, timeout=120)


def test_kernel_boot_image_is_published_with_its_boot_mode(tmp_path: Path) -> None:
    image = Path(build_test_disk_image(CACHE))
    digest = "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    qcow = tmp_path / "plain.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "16M"], check=True)
    with running_server(tmp_path / "data") as server:
        data = str(server.data_dir)
        name = unique("kboot")
        result = _image_add(name, str(image), "--data-dir", data, "--os-version", "12")
        assert result.returncode == 0, result.stderr
        assert "raw" in result.stdout and "kernel boot" in result.stdout

        cvmi = server.kubectl_json("get", "cvmi", name)
        annotations = cvmi["metadata"]["annotations"]
        assert annotations[kernelboot.BOOT_ANNOTATION] == "kernel"
        assert annotations[library.DIGEST_ANNOTATION] == digest
        status = cvmi["status"]
        assert status["osInfo"] == {"id": "debian", "type": "linux", "version": "12"}
        assert (status["type"], status["firmware"]) == ("raw", "bios")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Imported")
        assert library.stored_path(server.data_dir / "images" / "vm", digest).is_file()

        # the same name republished with a disk that has no kernel of its own
        result = _image_add(name, str(qcow), "--data-dir", data)
        assert result.returncode == 0, result.stderr
        assert "kernel boot" not in result.stdout
        cvmi = server.kubectl_json("get", "cvmi", name)
        assert kernelboot.BOOT_ANNOTATION not in cvmi["metadata"].get("annotations", {})
        assert "osInfo" not in cvmi["status"] and cvmi["status"]["type"] == "qcow2"

        # a plain disk published first never gets the annotation
        plain = unique("plain")
        assert _image_add(plain, str(qcow), "--data-dir", data).returncode == 0
        cvmi = server.kubectl_json("get", "cvmi", plain)
        assert kernelboot.BOOT_ANNOTATION not in cvmi["metadata"]["annotations"]


def test_add_test_guest_builds_and_publishes_the_test_guest(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        result = subprocess.run(
            [sys.executable, "-m", "kubevisor.cli.main", "image", "add-test-guest",
             "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        cvmi = server.kubectl_json("get", "cvmi", "test-guest")
        assert cvmi["metadata"]["annotations"][kernelboot.BOOT_ANNOTATION] == "kernel"
        digest = cvmi["metadata"]["annotations"][library.DIGEST_ANNOTATION]
        stored = library.stored_path(server.data_dir / "images" / "vm", digest)
        assert stored.is_file()
        assert list((server.data_dir / "cache" / "guest").glob("test-disk-image-*.raw"))
