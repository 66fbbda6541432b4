"""Raw OCI container start latency: the baseline for pod start.

For each OCI runtime detected on this host (runc, crun), starts N
containers one after another through kubevisor's OCI driver
(:class:`kubevisor.runtime.oci.OciRuntime`: bundle, conmon, create, start)
and times each ``run()`` call until it returns a running container. The
containers stay up until all N have started (as pods would), then are
removed. Prints one JSON object with p50/p99/mean/max seconds per runtime.

Run (as root): ``.venv/bin/python bench/oci_start.py [--n 20] [--output FILE]``.
By default the container is ``sleep 3600`` in a busybox root filesystem
built from /bin/busybox; ``--rootfs DIR --args CMD...`` times another one.
The timing loop, :func:`kubevisor.cli.benchhost.measure`, is shared with
``kubevisor bench pods``, which times the same container beside its pods.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubevisor.cli.benchhost import measure  # noqa: E402
from kubevisor.runtime.oci import OciRuntime  # noqa: E402
from kubevisor.runtime.oci.detect import detect  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(samples, 50), 4),
        "p99": round(percentile(samples, 99), 4),
        "mean": round(statistics.fmean(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
    }


async def main_async(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kv-oci-bench-") as workdir:
        rootfs = options.rootfs
        if rootfs is None:
            from tests.runtime.oci.conftest import build_busybox_rootfs
            rootfs = str(build_busybox_rootfs(Path(workdir) / "rootfs"))
        cgroup_parent = f"/kubevisor-bench-{uuid.uuid4().hex[:6]}"
        detection = await detect(os.path.join(workdir, "detect"), cgroup_parent=cgroup_parent)
        report: dict[str, Any] = {
            "benchmark": "oci_start",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
            "cgroup_mode": detection.cgroup_mode,
            "n": options.n,
            "container": {"rootfs": "busybox" if options.rootfs is None else rootfs,
                          "args": options.args},
            "what": "seconds from OciRuntime.run() call to a running container "
                    "(bundle, conmon, runtime create, runtime start), sequential",
            "runtimes": {},
            "unusable": detection.problems,
        }
        for name, profile in detection.profiles.items():
            if options.runtime and name not in options.runtime:
                continue
            runtime = OciRuntime(os.path.join(workdir, f"state-{name}"), profile,
                                 cgroup_parent=cgroup_parent)
            # one warm-up container: page cache, first conmon exec
            await measure(runtime, rootfs, n=1, args=options.args, workdir=workdir)
            samples = await measure(runtime, rootfs, n=options.n, args=options.args, workdir=workdir)
            report["runtimes"][name] = {
                "version": profile.capabilities.version,
                "way": profile.way.label,
                "limits": {"cpu": profile.capabilities.cpu_limits,
                           "memory": profile.capabilities.memory_limits,
                           "pids": profile.capabilities.pids_limits},
                **summary(samples),
                "samples": [round(s, 4) for s in samples],
            }
        for root in Path("/sys/fs/cgroup").iterdir():
            try:
                (root / cgroup_parent.lstrip("/")).rmdir()
            except OSError:
                pass
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="containers per runtime (default 20)")
    parser.add_argument("--runtime", action="append", help="only this runtime (repeatable)")
    parser.add_argument("--rootfs", help="root filesystem to use (default: busybox built here)")
    parser.add_argument("--args", nargs="+", default=["sleep", "3600"], help="container command")
    parser.add_argument("--output", help="also write the JSON report to this file")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/oci_start.py needs root (OCI runtimes)")
    report = asyncio.run(main_async(options))
    text = json.dumps(report, indent=2)
    print(text)
    if options.output:
        Path(options.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
