"""``kubevisor image add``: real qemu-img images (qcow2, raw, a GPT disk
with an EFI system partition) imported into a data dir's VM image library
and published on a real ``kubevisor up --no-node``; the stored file is
named by its sha256 and stored once; bad input is one error line."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import struct
import subprocess
import sys
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubevisor.runtime.qemu import library
from tests.support.server import KubevisorServer, running_server, unique

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")


def _kubevisor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubevisor.cli.main", "image", "add", *args],
                          capture_output=True, text=True, timeout=120)


def _qemu_img_create(path: Path, fmt: str, size: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _gpt_disk(path: Path, *, types: list[uuid.UUID], size: int = 8 << 20) -> Path:
    """A raw disk with a protective MBR and a GPT listing ``types``
    (sector 512; CRCs right, so real tools would accept it too)."""
    sectors = size // 512
    entries = bytearray(128 * 128)
    for i, type_guid in enumerate(types):
        first = 2048 + i * 2048
        struct.pack_into("<16s16sQQQ", entries, i * 128, type_guid.bytes_le, uuid.uuid4().bytes_le,
                         first, first + 2047, 0)
    header = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, 1,
                                   sectors - 1, 34, sectors - 34, uuid.uuid4().bytes_le, 2, 128,
                                   128, zlib.crc32(entries)))
    struct.pack_into("<I", header, 16, zlib.crc32(header))
    mbr = bytearray(512)
    struct.pack_into("<B3sB3sII", mbr, 446, 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                     min(sectors - 1, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    with open(path, "wb") as out:
        out.truncate(size)
        out.write(mbr)
        out.write(header)
        out.seek(1024)
        out.write(entries)
    return path


# -- without a server ----------------------------------------------------------

def test_firmware_from_the_partition_table(tmp_path: Path) -> None:
    esp = _gpt_disk(tmp_path / "esp.raw", types=[library.ESP_GUID])
    hybrid = _gpt_disk(tmp_path / "hybrid.raw", types=[library.BIOS_BOOT_GUID, library.ESP_GUID])
    plain = _qemu_img_create(tmp_path / "plain.raw", "raw", "4M")
    assert library.partition_types(esp.read_bytes()[:1 << 20]) == [library.ESP_GUID]
    assert library.firmware_of(esp.read_bytes()[:1 << 20]) == "efi"
    assert library.firmware_of(hybrid.read_bytes()[:1 << 20]) == "bios"
    assert library.firmware_of(plain.read_bytes()) == "bios"


async def test_firmware_seen_through_qcow2(tmp_path: Path) -> None:
    esp = _gpt_disk(tmp_path / "esp.raw", types=[library.ESP_GUID])
    qcow = tmp_path / "esp.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(esp), str(qcow)], check=True)
    assert await library.detect_firmware(qcow, "qcow2") == "efi"
    assert await library.detect_firmware(esp, "raw") == "efi"


def test_import_is_content_addressed_and_stored_once(tmp_path: Path) -> None:
    root = tmp_path / "vm"
    disk = _qemu_img_create(tmp_path / "a.qcow2", "qcow2", "64M")
    seen: list[int] = []
    first = library.import_file(disk, root, progress=lambda done, total: seen.append(done))
    assert first.added and first.digest == "sha256:" + _sha256(disk)
    assert first.path == root / "sha256" / _sha256(disk)
    assert first.path.read_bytes() == disk.read_bytes()
    assert seen and seen[-1] == disk.stat().st_size
    inode = first.path.stat().st_ino
    again = library.import_file(disk, root)
    assert (again.added, again.digest, again.path.stat().st_ino) == (False, first.digest, inode)
    copy = tmp_path / "copy.qcow2"  # the same content under another name
    shutil.copyfile(disk, copy)
    third = library.import_file(copy, root)
    assert (third.added, third.digest) == (False, first.digest)
    assert sorted(p.name for p in (root / "sha256").iterdir()) == [_sha256(disk)]


def test_sparse_raw_stays_sparse(tmp_path: Path) -> None:
    disk = _qemu_img_create(tmp_path / "big.raw", "raw", "256M")
    stored = library.import_file(disk, tmp_path / "vm")
    assert stored.path.stat().st_size == 256 << 20
    assert stored.path.stat().st_blocks * 512 < 1 << 20


def test_bad_input_is_one_error_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    result = _kubevisor("x", str(tmp_path / "missing.qcow2"), "--data-dir", str(data))
    assert (result.returncode, result.stderr.strip()) == (
        1, f"error: {tmp_path}/missing.qcow2: no such file")
    junk = tmp_path / "notes.txt"
    junk.write_text("not a disk image\n")
    result = _kubevisor("x", str(junk), "--data-dir", str(data))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {junk}: not a disk image")
    assert result.stderr.count("\n") == 1
    blobs = data / "images" / "vm" / "sha256"
    assert not blobs.exists() or not any(blobs.iterdir())
    disk = _qemu_img_create(tmp_path / "ok.qcow2", "qcow2", "1M")
    result = _kubevisor("x", str(disk), "--data-dir", str(data), "--firmware", "coreboot")
    assert result.returncode == 1 and result.stderr.startswith("error: --firmware must be")


# -- against a real server -----------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubevisorServer]:
    with running_server(tmp_path_factory.mktemp("imgadd") / "data") as srv:
        yield srv


@pytest.mark.slow
def test_cluster_image_and_namespaced_image(server: KubevisorServer, tmp_path: Path) -> None:
    data = str(server.data_dir)
    qcow = _qemu_img_create(tmp_path / "disk.qcow2", "qcow2", "100M")
    efi = _gpt_disk(tmp_path / "efi.raw", types=[library.ESP_GUID])
    cname, vname, ns = unique("cvmi"), unique("vmi"), unique("ns")
    server.create_namespace(ns)

    result = _kubevisor(cname, str(qcow), "--data-dir", data, "--os-type", "linux",
                        "--os-id", "debian12")
    assert result.returncode == 0, result.stderr
    assert "(stored)" in result.stdout
    result = _kubevisor(vname, str(efi), "--data-dir", data, "--namespace", ns)
    assert result.returncode == 0, result.stderr

    listed = server.kubectl("get", "cvmi,vmi", "-A").stdout
    assert cname in listed and vname in listed

    cvmi = server.kubectl_json("get", "cvmi", cname)
    status = cvmi["status"]
    assert status["type"] == "qcow2" and status["firmware"] == "bios"
    assert status["disks"][0]["limit"] == str(100 << 20)
    assert status["osInfo"] == {"id": "debian12", "type": "linux"}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Imported")
    digest = cvmi["metadata"]["annotations"][library.DIGEST_ANNOTATION]
    assert digest == "sha256:" + _sha256(qcow)
    stored = library.stored_path(server.data_dir / "images" / "vm", digest)
    assert stored.name == _sha256(qcow) and stored.is_file()

    vmi = server.kubectl_json("get", "vmi", vname, "-n", ns)
    assert vmi["status"]["firmware"] == "efi" and vmi["status"]["type"] == "raw"
    assert vmi["status"]["disks"][0]["limit"] == str(8 << 20)
    assert vmi["metadata"]["annotations"][library.DIGEST_ANNOTATION] == "sha256:" + _sha256(efi)

    # the same content again (update of an existing object): nothing copied
    inode = stored.stat().st_ino
    result = _kubevisor(cname, str(qcow), "--data-dir", data, "--firmware", "uefi")
    assert result.returncode == 0, result.stderr
    assert "(already stored)" in result.stdout and stored.stat().st_ino == inode
    assert server.kubectl_json("get", "cvmi", cname)["status"]["firmware"] == "efi"
    blobs = sorted(p.name for p in (server.data_dir / "images" / "vm" / "sha256").iterdir())
    assert blobs == sorted({_sha256(qcow), _sha256(efi)})


@pytest.mark.slow
def test_unreachable_api_is_one_error_line(server: KubevisorServer, tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    # the server's kubeconfig pointed at a port nobody listens on
    text = server.kubeconfig.read_text().replace(f":{server.port}", ":1")
    config.write_text(text)
    disk = _qemu_img_create(tmp_path / "d.qcow2", "qcow2", "1M")
    result = _kubevisor("nowhere", str(disk), "--data-dir", str(tmp_path / "data"),
                        "--kubeconfig", str(config))
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("error: ClusterVirtualMachineImage nowhere: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "images" / "vm" / "sha256").exists()  # checked before copying
    result = _kubevisor("nons", str(disk), "--data-dir", str(server.data_dir),
                        "--namespace", unique("absent"))
    assert result.returncode == 1 and "not found" in result.stderr.lower(), result.stderr


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on loopback, and its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.slow
def test_add_from_a_loopback_url(server: KubevisorServer, http_dir: tuple[Path, str]) -> None:
    www, base = http_dir
    disk = _qemu_img_create(www / "web.qcow2", "qcow2", "32M")
    (www / "junk.img").write_text("hello\n")
    name = unique("web")
    result = _kubevisor(name, f"{base}/web.qcow2", "--data-dir", str(server.data_dir))
    assert result.returncode == 0, result.stderr
    cvmi = server.kubectl_json("get", "cvmi", name)
    assert cvmi["metadata"]["annotations"][library.DIGEST_ANNOTATION] == "sha256:" + _sha256(disk)
    assert cvmi["status"]["disks"][0]["limit"] == str(32 << 20)
    vm_root = server.data_dir / "images" / "vm"
    assert (vm_root / "sha256" / _sha256(disk)).is_file()
    for bad, text in ((f"{base}/missing.qcow2", "HTTP 404"), (f"{base}/junk.img", "not a disk image"),
                      ("ftp://127.0.0.1/x.qcow2", "only http and https")):
        result = _kubevisor(unique("bad"), bad, "--data-dir", str(server.data_dir))
        assert result.returncode == 1 and text in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    assert not any((vm_root / "downloads").iterdir())
