"""The small test guest on the QEMU driver: create → running with an IP
(the guest's ``KUBEVISOR-READY <host> <ip>`` line on its serial log),
suspend to a file and resume (until the guest answers on its console),
and QEMU's memory overhead per VM: the process's PSS outside the guest
RAM mapping (read from /proc/<pid>/smaps). One VM at a time, each with a
NoCloud seed and a linked-clone data disk, QEMU user networking.
Prints one JSON object; ``--output FILE`` also writes it there.

Run: ``.venv/bin/python bench/vm_boot.py [--n 10] [--accel auto|kvm|tcg]
[--image disk|kernel-boot]``. ``kernel-boot`` boots the way a
VirtualMachine of the test image does: the linked clone is of the
kernel-boot image and the kernel comes from it (extracted once, timed
apart: ``kernel_extract_seconds``).
The accelerator and the probe's reason are in the report (KVM vs TCG:
run once with each where both work).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubevisor.runtime.guest import build_test_disk, build_test_disk_image  # noqa: E402
from kubevisor.runtime.qemu import Disk, NetworkInterface, QemuDriver, kernelboot  # noqa: E402
from kubevisor.runtime.qemu import disks as disk_files  # noqa: E402
from tests.runtime.qemu.guestvm import (  # noqa: E402
    CACHE,
    console_run,
    guest_image,
    guest_spec,
    make_seed,
    random_mac,
    wait_ready,
)


def summary(samples: list[float]) -> dict[str, float]:
    return {"n": len(samples), "p50": statistics.median(samples), "min": min(samples),
            "max": max(samples)}


def overhead_bytes(pid: int, guest_bytes: int) -> tuple[int, int]:
    """(PSS outside the guest RAM mapping, total PSS) of process ``pid``."""
    total = outside = 0
    size = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1]) * 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
            total += pss
            if size < guest_bytes:
                outside += pss
    return outside, total


async def measure(*, n: int, accel: str, memory_mib: int, image: str = "disk") -> dict[str, Any]:
    guest = guest_image()
    base = build_test_disk_image(CACHE) if image == "kernel-boot" else build_test_disk(CACHE)
    with tempfile.TemporaryDirectory(prefix="kubevisor-bench-vm-", dir=ROOT / ".cache") as tmp:
        boot, extract_seconds = None, None
        if image == "kernel-boot":
            started = time.perf_counter()
            boot = await kernelboot.extract(base, "raw", Path(tmp, "kernel"))
            extract_seconds = time.perf_counter() - started
            assert boot is not None, f"{base} is not a kernel-boot image"
        driver = await QemuDriver.open(Path(tmp, "vms"), probe_cache=str(ROOT / ".cache/qemu-probe.json"),
                                       probe_kernel=guest.kernel,
                                       force_accel=None if accel == "auto" else accel)
        boots, resumes, suspends, overheads, totals = [], [], [], [], []
        for i in range(n):
            vm_id = f"bench{i}"
            started = time.perf_counter()
            clone = await disk_files.linked_clone(base, str(Path(tmp, f"{vm_id}.qcow2")))
            seed = await make_seed(Path(tmp, f"{vm_id}.iso"), hostname=vm_id,
                                   runcmd=["echo bench > /root/mark"])
            spec = guest_spec(vm_id, seed=seed, disks=[Disk(clone.path, boot=True)],
                              memory_mib=memory_mib, interfaces=[NetworkInterface(mac=random_mac())])
            if boot is not None:
                spec = dataclasses.replace(spec, direct_boot=boot)
            await driver.create(spec)
            state = await driver.start(vm_id)
            _, ip = await wait_ready(state.console_log, timeout=120)
            boots.append(time.perf_counter() - started)
            assert ip != "none"
            outside, total = overhead_bytes(state.pid, memory_mib << 20)
            overheads.append(outside)
            totals.append(total)
            if i < 3:
                started = time.perf_counter()
                await driver.suspend(vm_id)
                suspends.append(time.perf_counter() - started)
                started = time.perf_counter()
                state = await driver.resume(vm_id)
                assert await console_run(state.console_socket, "cat /root/mark") == "bench\n"
                resumes.append(time.perf_counter() - started)
            await driver.delete(vm_id)
        return {
            "benchmark": "vm-boot",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "loadavg_at_start": os.getloadavg()[0]},
            "accel": driver.capabilities.accel,
            "accel_reason": driver.capabilities.reason,
            "qemu_version": driver.capabilities.qemu_version,
            "guest": {"kernel": guest.kernel_version, "memory_mib": memory_mib, "cpus": 1,
                      "image": image},
            "kernel_extract_seconds": extract_seconds,
            "create_to_ready_with_ip_seconds": summary(boots),
            "suspend_seconds": summary(suspends),
            "resume_to_console_answer_seconds": summary(resumes),
            "qemu_pss_outside_guest_ram_mib": summary([b / (1 << 20) for b in overheads]),
            "qemu_pss_total_mib": summary([b / (1 << 20) for b in totals]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--memory-mib", type=int, default=256)
    parser.add_argument("--image", choices=("disk", "kernel-boot"), default="disk")
    parser.add_argument("--output")
    args = parser.parse_args()
    (ROOT / ".cache").mkdir(exist_ok=True)
    report = asyncio.run(measure(n=args.n, accel=args.accel, memory_mib=args.memory_mib,
                                 image=args.image))
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
