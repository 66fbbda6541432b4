"""Which accelerator QEMU can use on this host: KVM when a guest really
runs under it, else TCG, with the reason. ``/dev/kvm`` existing is not
enough (a nested hypervisor may accept the ioctls and then abort with an
MSR error or never run a vCPU), so the probe boots a tiny guest: SeaBIOS
loads a 512-byte boot sector whose code writes to QEMU's
``isa-debug-exit`` port, which ends QEMU with a known exit code. Then, given a
kernel, a Linux guest whose initramfs does the same through /dev/port
(some nested hypervisors run real mode and hang in Linux). That takes
a second under KVM; a hang or any other outcome within the timeout
means no KVM, and so does having no kernel to try: a boot sector that
runs under KVM proves nothing about Linux guests (they hang on this
project's own nested development hosts).

The answer is cached per host boot (keyed by the kernel's boot_id) in a
small JSON file. Called once by :class:`~kubevisor.runtime.qemu.driver.QemuDriver`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

from kubevisor.runtime.qemu.types import Accel, VMCapabilities

QEMU = "qemu-system-x86_64"
DEFAULT_CACHE = "/run/kubevisor/qemu-probe.json"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
#: mov al, 0x31; out 0xf4, al; hlt; jmp $-1  -> QEMU exits with (0x31 << 1) | 1
_BOOT_CODE = bytes.fromhex("b031e6f4f4ebfd")
_EXIT_CODE = (0x31 << 1) | 1


def boot_sector() -> bytes:
    return _BOOT_CODE + b"\0" * (510 - len(_BOOT_CODE)) + b"\x55\xaa"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


async def qemu_version(qemu: str = QEMU) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            qemu, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
    except OSError:
        return ""
    match = re.search(rb"version (\S+)", out)
    return match.group(1).decode() if match else ""


_PROBE_INIT = b"""#!/bin/sh
mount -t devtmpfs dev /dev
printf '\\061' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
"""


def probe_initramfs() -> bytes:
    """An initramfs whose /init writes 0x31 to the isa-debug-exit port
    through /dev/port (busybox-static does the work)."""
    import gzip
    import io

    from kubevisor.runtime.guest.cpio import CpioWriter  # here: guest imports this package

    raw = io.BytesIO()
    cpio = CpioWriter(raw)
    cpio.file("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
    for applet in ("sh", "mount", "printf", "dd"):
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.file("init", _PROBE_INIT, 0o755)
    cpio.directory("dev")
    cpio.close()
    return gzip.compress(raw.getvalue(), mtime=0)


def host_kernel() -> str | None:
    """A readable kernel of this host's distribution (``/boot/vmlinuz-*``), if any."""
    found = sorted(p for p in Path("/boot").glob("vmlinuz-*") if os.access(p, os.R_OK))
    return str(found[-1]) if found else None


async def _run_guest(argv: list[str], accel: Accel, what: str, timeout: float) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        return f"cannot run {argv[0]}: {exc}"
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"{what} under {accel} did not finish within {timeout:g}s"
    if proc.returncode == _EXIT_CODE:
        return ""
    message = " ".join(err.decode(errors="replace").split())[-300:]
    return f"{what} under {accel} failed (exit {proc.returncode}): {message}"


async def boot_tiny_guest(accel: Accel, *, kernel: str | None = None, qemu: str = QEMU,
                          timeout: float = 10.0) -> str:
    """Boot the tiny guests under ``accel``; "" when they ran, else why not.
    First a boot sector (SeaBIOS, real mode), then, when ``kernel`` is
    given, that Linux kernel up to a shell script in its initramfs: some
    nested hypervisors run the first and hang in the second."""
    base = [qemu, "-machine", f"q35,accel={accel}", "-cpu", "host" if accel == "kvm" else "max",
            "-m", "128", "-nodefaults", "-no-user-config", "-display", "none",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    with tempfile.TemporaryDirectory(prefix="kubevisor-probe-") as tmp:
        image = Path(tmp, "boot.img")
        image.write_bytes(boot_sector())
        os.truncate(image, 1 << 20)  # SeaBIOS will not read a disk of one sector
        failure = await _run_guest([*base, "-drive", f"file={image},format=raw,if=ide"],
                                   accel, "a boot sector", timeout)
        if failure or kernel is None:
            return failure
        initrd = Path(tmp, "initrd.img")
        initrd.write_bytes(probe_initramfs())
        return await _run_guest([*base, "-kernel", kernel, "-initrd", str(initrd), "-append", "panic=-1 quiet"],
                                accel, "a Linux guest", timeout)


async def probe(*, qemu: str = QEMU, timeout: float = 10.0, cache_path: str | None = DEFAULT_CACHE,
                force: Accel | None = None, kernel: str | None = None) -> VMCapabilities:
    """This host's capabilities; ``force`` skips the probe (tests, config).
    ``kernel`` (default: the host's own, if readable) is booted as the
    second tiny guest; without one, KVM is not trusted (TCG, saying why).
    ``timeout`` applies to each tiny guest."""
    version = await qemu_version(qemu)
    uefi = os.path.exists(OVMF_CODE) and os.path.exists(OVMF_VARS)
    if force is not None:
        return VMCapabilities(accel=force, reason=f"accelerator {force} set by configuration",
                              qemu_version=version, uefi=uefi)
    current = boot_id()
    if cache_path:
        with contextlib.suppress(OSError, ValueError, KeyError):
            cached = json.loads(Path(cache_path).read_text())
            if cached["boot_id"] == current and cached["qemu_version"] == version \
                    and (cached.get("kernel") == kernel or kernel is None):
                return VMCapabilities(accel=cached["accel"], reason=cached["reason"],
                                      qemu_version=version, uefi=uefi)
    if not os.path.exists("/dev/kvm"):
        accel: Accel = "tcg"
        reason = "no /dev/kvm on this host"
    elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
        accel, reason = "tcg", "/dev/kvm is not readable and writable by this user"
    else:
        kernel = kernel or host_kernel()
        if kernel is None:
            accel, reason = "tcg", ("no Linux kernel to try KVM with (a readable /boot/vmlinuz-*, "
                                    "or KUBEVISOR_VM_PROBE_KERNEL)")
        elif failure := await boot_tiny_guest("kvm", kernel=kernel, qemu=qemu, timeout=timeout):
            accel, reason = "tcg", failure
        else:
            accel, reason = "kvm", "a Linux guest booted under KVM"
    if cache_path:
        with contextlib.suppress(OSError):
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            tmp = f"{cache_path}.{os.getpid()}"
            Path(tmp).write_text(json.dumps({"boot_id": current, "qemu_version": version,
                                             "kernel": kernel, "accel": accel, "reason": reason}))
            os.replace(tmp, cache_path)
    return VMCapabilities(accel=accel, reason=reason, qemu_version=version, uefi=uefi)
