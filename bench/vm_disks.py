"""VM disk creation: a qcow2 linked clone of a base image (what a VM's
boot disk is) against a full copy (``qemu-img convert``), both through
:mod:`kubevisor.runtime.qemu.disks`. The base is a qcow2 image of
``--size-mib`` MiB with ``--data-mib`` MiB of random data written into it.
Prints one JSON object (p50/max seconds per method, sizes); ``--output
FILE`` also writes it there.

Run: ``.venv/bin/python bench/vm_disks.py [--clones 20] [--copies 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubevisor.runtime.qemu import disks  # noqa: E402

MiB = 1 << 20


def summary(samples: list[float]) -> dict[str, float]:
    return {"n": len(samples), "p50": statistics.median(samples), "min": min(samples),
            "max": max(samples), "mean": statistics.fmean(samples)}


async def measure(*, clones: int, copies: int, size_mib: int, data_mib: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubevisor-bench-disks-", dir=ROOT / ".cache") as tmp:
        raw = Path(tmp, "base.raw")
        with raw.open("wb") as out:
            for _ in range(data_mib):
                out.write(os.urandom(MiB))
            out.truncate(size_mib * MiB)
        base = Path(tmp, "base.qcow2")
        subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(base)], check=True)
        raw.unlink()
        clone_times, copy_times = [], []
        for n in range(clones):
            started = time.perf_counter()
            await disks.linked_clone(str(base), str(Path(tmp, f"clone{n}.qcow2")), size=2 * size_mib * MiB)
            clone_times.append(time.perf_counter() - started)
        for n in range(copies):
            started = time.perf_counter()
            await disks.full_copy(str(base), str(Path(tmp, f"copy{n}.qcow2")))
            copy_times.append(time.perf_counter() - started)
        clone_bytes = os.path.getsize(Path(tmp, "clone0.qcow2"))
        copy_bytes = os.path.getsize(Path(tmp, "copy0.qcow2"))
    return {
        "benchmark": "vm-disks",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "loadavg_at_start": os.getloadavg()[0]},
        "base": {"virtual_mib": size_mib, "data_mib": data_mib, "format": "qcow2"},
        "linked_clone_seconds": summary(clone_times),
        "full_copy_seconds": summary(copy_times),
        "linked_clone_file_bytes": clone_bytes,
        "full_copy_file_bytes": copy_bytes,
        "speedup_p50": statistics.median(copy_times) / statistics.median(clone_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clones", type=int, default=20)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--data-mib", type=int, default=256)
    parser.add_argument("--output")
    args = parser.parse_args()
    (ROOT / ".cache").mkdir(exist_ok=True)
    report = asyncio.run(measure(clones=args.clones, copies=args.copies, size_mib=args.size_mib,
                                 data_mib=args.data_mib))
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
