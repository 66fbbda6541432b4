"""Kernel-boot images: the test guest's disk image read back with
``probe``/``extract`` as raw and as qcow2 (the extracted files equal the
guest's, a second extraction reads nothing, racing extractions agree),
images that are not kernel-boot images (blank qcow2, non-FAT raw, a GPT
disk, FAT without boot.json) giving None and leaving nothing behind,
broken boot.json refused, and a real boot: QEMU direct boot of the
extracted kernel with a linked clone of the image as the boot disk and a
NoCloud seed with a static address reaches the guest's readiness line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kubevisor.runtime.guest import build_test_disk, build_test_disk_image, build_test_guest
from kubevisor.runtime.qemu import (
    DirectBoot,
    Disk,
    NetworkInterface,
    QemuDriver,
    VMSpec,
    kernelboot,
)
from kubevisor.runtime.qemu import disks as disk_files
from kubevisor.runtime.qemu import seed as seeds
from kubevisor.runtime.qemu.errors import DiskError
from kubevisor.runtime.qemu.library import ESP_GUID
from tests.cli.test_image_add import _gpt_disk
from tests.runtime.qemu.conftest import needs_qemu
from tests.runtime.qemu.guestvm import CACHE, console_run, make_seed, random_mac, wait_ready

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("qemu-img", "mkfs.vfat", "mtype")),
    reason="needs qemu-utils, dosfstools and mtools")

DIGEST = "sha256:" + "ab" * 32


def as_qcow2(raw: str, path: Path) -> str:
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, str(path)],
                   check=True)
    return str(path)


def fat_image(path: Path, files: dict[str, bytes]) -> str:
    """A FAT disk holding ``files`` (paths inside it), made with the tools directly."""
    subprocess.run(["mkfs.vfat", "-C", str(path), "4096"], capture_output=True, check=True)
    subprocess.run(["mmd", "-i", str(path), "::/kubevisor"], check=True)
    for name, data in files.items():
        source = path.with_name("src-" + name.replace("/", "_"))
        source.write_bytes(data)
        subprocess.run(["mcopy", "-i", str(path), str(source), f"::{name}"], check=True)
    return str(path)


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
async def test_extract_gives_the_guest_files(tmp_path: Path, fmt: str) -> None:
    guest = build_test_guest(CACHE)
    image = build_test_disk_image(CACHE)
    if fmt == "qcow2":
        image = as_qcow2(image, tmp_path / "image.qcow2")
    info = await kernelboot.probe(image, fmt)
    assert info == kernelboot.BootInfo(kernel="/kubevisor/vmlinuz", initrd="/kubevisor/initrd.img",
                                       cmdline=guest.append,
                                       os_info={"id": "debian", "type": "linux"})
    dest = kernelboot.cache_dir(tmp_path / "images", DIGEST)
    assert dest == tmp_path / "images" / "kernels" / ("ab" * 32)
    boot = await kernelboot.extract(image, fmt, dest)
    assert boot == DirectBoot(kernel=str(dest / "vmlinuz"), initrd=str(dest / "initrd.img"),
                              append=guest.append)
    assert Path(boot.kernel).read_bytes() == Path(guest.kernel).read_bytes()
    assert Path(boot.initrd).read_bytes() == Path(guest.initrd).read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no scratch left
    # a second call reuses the files: it does not even need the image
    inode = Path(boot.kernel).stat().st_ino
    assert await kernelboot.extract(tmp_path / "gone.raw", fmt, dest) == boot
    assert Path(boot.kernel).stat().st_ino == inode
    # a destination without its result file is not trusted: read again, replaced
    (dest / kernelboot.RESULT_FILE).unlink()
    (dest / "initrd.img").write_bytes(b"truncated")
    with pytest.raises(DiskError):
        await kernelboot.extract(tmp_path / "gone.raw", fmt, dest)
    assert await kernelboot.extract(image, fmt, dest) == boot
    assert Path(boot.initrd).read_bytes() == Path(guest.initrd).read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


async def test_racing_extractions_agree(tmp_path: Path) -> None:
    image = build_test_disk_image(CACHE)
    dest = tmp_path / "kernels" / "one"
    results = await asyncio.gather(*(kernelboot.extract(image, "raw", dest) for _ in range(4)))
    assert len(set(results)) == 1 and results[0] is not None
    assert sorted(p.name for p in dest.iterdir()) == ["direct-boot.json", "initrd.img", "vmlinuz"]
    assert [p.name for p in dest.parent.iterdir()] == ["one"]


async def test_other_images_are_not_kernel_boot_images(tmp_path: Path) -> None:
    random_raw = tmp_path / "random.raw"
    random_raw.write_bytes(os.urandom(1 << 20))
    zeros = tmp_path / "zeros.raw"
    zeros.write_bytes(bytes(1 << 20))
    cases = [(build_test_disk(CACHE), "qcow2"), (str(random_raw), "raw"), (str(zeros), "raw"),
             (str(_gpt_disk(tmp_path / "gpt.raw", types=[ESP_GUID])), "raw"),
             (fat_image(tmp_path / "plain-fat.raw", {"/kubevisor/notes.txt": b"hi\n"}), "raw")]
    cases.append((as_qcow2(cases[-1][0], tmp_path / "plain-fat.qcow2"), "qcow2"))
    for image, fmt in cases:
        assert await kernelboot.probe(image, fmt) is None, image
        assert await kernelboot.extract(image, fmt, tmp_path / "out" / "x") is None, image
        assert list((tmp_path / "out").iterdir()) == [], image  # nothing left behind
    with pytest.raises(DiskError, match="No such file"):
        await kernelboot.probe(tmp_path / "missing.raw", "raw")
    with pytest.raises(DiskError, match="qemu-img dd"):
        await kernelboot.probe(tmp_path / "missing.qcow2", "qcow2")
    with pytest.raises(DiskError, match="vmdk"):
        await kernelboot.probe(str(zeros), "vmdk")


async def test_broken_boot_json_is_an_error(tmp_path: Path) -> None:
    bad_json = fat_image(tmp_path / "a.raw", {"/kubevisor/boot.json": b"{not json"})
    no_kernel = fat_image(tmp_path / "b.raw", {"/kubevisor/boot.json": b'{"initrd": "x"}'})
    missing = fat_image(tmp_path / "c.raw", {"/kubevisor/boot.json": b'{"kernel": "/kubevisor/vmlinuz"}'})
    for image, message in ((bad_json, "not JSON"), (no_kernel, 'needs a "kernel"'),
                           (missing, "does not hold")):
        with pytest.raises(DiskError, match=message):
            await kernelboot.extract(image, "raw", tmp_path / "out")
        assert not (tmp_path / "out").exists()


async def test_relative_paths_and_the_cmdline_file(tmp_path: Path) -> None:
    image = fat_image(tmp_path / "k.raw", {
        "/kubevisor/boot.json": json.dumps({"kernel": "bzImage"}).encode(),
        "/kubevisor/bzImage": b"KERNEL" * 100,
        "/kubevisor/cmdline": b"console=ttyS0\n  quiet \n"})
    boot = await kernelboot.extract(image, "raw", tmp_path / "out")
    assert boot == DirectBoot(kernel=str(tmp_path / "out" / "vmlinuz"), initrd="",
                              append="console=ttyS0 quiet")
    assert Path(boot.kernel).read_bytes() == b"KERNEL" * 100
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["direct-boot.json", "vmlinuz"]


def test_write_image_is_deterministic(tmp_path: Path) -> None:
    kernel = tmp_path / "k"
    kernel.write_bytes(os.urandom(300_000))
    made = []
    for name in ("one.raw", "two.raw"):
        os.utime(kernel, (1e9 + len(made), 1e9 + len(made)))  # mtimes differ: not recorded
        kernelboot.write_image(tmp_path / name, kernel=kernel, cmdline="console=ttyS0")
        made.append((tmp_path / name).read_bytes())
    assert made[0] == made[1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(DiskError, match="No such file"):
        kernelboot.write_image(tmp_path / "three.raw", kernel=tmp_path / "absent")
    assert not (tmp_path / "three.raw").exists()


@needs_qemu
@pytest.mark.slow
async def test_boot_from_a_kernel_boot_image(driver: QemuDriver, tmp_path: Path) -> None:
    """As the node agent will: extract from the stored image, boot its
    kernel directly, the image's linked clone as the boot disk."""
    guest = build_test_guest(CACHE)
    image = as_qcow2(build_test_disk_image(CACHE), tmp_path / "image.qcow2")
    boot = await kernelboot.extract(image, "qcow2", kernelboot.cache_dir(tmp_path, DIGEST))
    assert boot is not None
    clone = await disk_files.linked_clone(image, str(tmp_path / "root.qcow2"), size=64 << 20)
    mac = random_mac()
    seed = await make_seed(tmp_path / "seed.iso", hostname="vm-kboot", network_config=(
        seeds.render_network_config([{"mac": mac, "addresses": ["10.0.2.77/24"],
                                      "gateway": "10.0.2.2"}])))
    spec = VMSpec(id="kboot", cpus=1, memory_bytes=192 << 20, direct_boot=boot, seed=seed,
                  disks=(Disk(clone.path, boot=True),), interfaces=(NetworkInterface(mac=mac),))
    await driver.create(spec)
    state = await driver.start("kboot")
    assert await wait_ready(state.console_log) == ("vm-kboot", "10.0.2.77")
    assert (await console_run(state.console_socket, "cat /proc/cmdline")).strip() == guest.append
    # the boot disk is the image: its FAT filesystem, seen from inside the guest
    seen = await console_run(state.console_socket,
                             "mkdir -p /tmp/b && mount -o ro /dev/vda /tmp/b && "
                             "cat /tmp/b/kubevisor/cmdline && umount /tmp/b")
    assert seen.strip() == guest.append
    size = await console_run(state.console_socket, "cat /sys/class/block/vda/size")
    assert int(size) * 512 == 64 << 20
    await driver.delete("kboot")
