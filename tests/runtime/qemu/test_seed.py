"""The NoCloud seed: a cidata-labelled ISO or vfat volume with the three
files, read back with the ISO and FAT tools (not with our own code)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kubevisor.runtime.qemu import seed

pytestmark = pytest.mark.skipif(shutil.which("genisoimage") is None or shutil.which("mcopy") is None,
                                reason="genisoimage and mtools are needed")


def test_renderers_write_standard_cloud_config() -> None:
    user = seed.render_user_data({"runcmd": ["echo hi"], "write_files": [
        {"path": "/etc/x", "content": "a\nb\n"}]})
    assert user.startswith("#cloud-config\n")
    assert "content: |\n" in user  # multi-line strings as literal blocks
    assert yaml.safe_load(user)["write_files"][0]["content"] == "a\nb\n"
    net = yaml.safe_load(seed.render_network_config([
        {"mac": "52:54:00:00:00:01", "addresses": ["10.1.0.5/24"], "gateway": "10.1.0.1"},
        {"mac": "52:54:00:00:00:02"}]))
    assert net["version"] == 2
    assert net["ethernets"]["nic0"] == {"match": {"macaddress": "52:54:00:00:00:01"}, "set-name": "eth0",
                                        "addresses": ["10.1.0.5/24"],
                                        "routes": [{"to": "default", "via": "10.1.0.1"}]}
    assert net["ethernets"]["nic1"]["dhcp4"] is True
    assert yaml.safe_load(seed.render_meta_data(instance_id="i-1", hostname="vm1")) == {
        "instance-id": "i-1", "local-hostname": "vm1"}


async def test_iso_seed(tmp_path: Path) -> None:
    path = await seed.write_seed(str(tmp_path / "seed.iso"), meta_data="instance-id: i-1\n",
                                 user_data="#cloud-config\n", network_config="version: 2\n")
    info = subprocess.run(["isoinfo", "-d", "-i", path], capture_output=True, text=True).stdout
    assert "Volume id: cidata" in info
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", path], capture_output=True, text=True).stdout
    assert sorted(listing.split()) == ["/meta-data", "/network-config", "/user-data"]
    meta = subprocess.run(["isoinfo", "-R", "-x", "/meta-data", "-i", path], capture_output=True).stdout
    assert meta == b"instance-id: i-1\n"


async def test_vfat_seed(tmp_path: Path) -> None:
    path = await seed.write_seed(str(tmp_path / "seed.img"), meta_data="instance-id: i-2\n",
                                 user_data="#cloud-config\nruncmd: [true]\n", fmt="vfat")
    label = subprocess.run(["mlabel", "-s", "-i", path, "::"], capture_output=True, text=True).stdout
    assert "CIDATA" in label
    user = subprocess.run(["mtype", "-i", path, "::user-data"], capture_output=True).stdout
    assert user == b"#cloud-config\nruncmd: [true]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.img"]
