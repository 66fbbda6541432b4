"""``kubevisor bench pods`` end to end with tiny counts (its own ``kubevisor
up``, a real node agent, runc, a bridge of its own), and its pure parts:
the image it builds, the pod CIDR it picks, the per-stage breakdown."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest

from kubevisor.cli.benchhost import busybox_archive
from kubevisor.cli.benchpods import CIDR_POOL, PodTimes, PodWatch, breakdown, free_pod_cidr, targets
from tests.support.server import kubevisor_command

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="containers and networks need root")


def test_the_busybox_archive_imports_as_an_image(tmp_path: Path) -> None:
    from kubevisor.runtime.images import LocalImageStore

    archive = busybox_archive(tmp_path / "bb.tar", "busybox:1")

    async def load() -> tuple[str, list[str]]:
        store = LocalImageStore(tmp_path / "images")
        try:
            images = await store.import_archive(str(archive))
            got = store.get("busybox:1")
            assert got is not None and got.id == images[0].id
            return images[0].ref, list(got.config.cmd or [])
        finally:
            await store.aclose()

    assert asyncio.run(load()) == ("busybox:1", ["sh"])
    assert busybox_archive(tmp_path / "again.tar").read_bytes() == archive.read_bytes()


def test_the_pod_cidr_is_big_enough_and_overlaps_no_route() -> None:
    cidr = ipaddress.ip_network(free_pod_cidr(1010))
    assert cidr.subnet_of(CIDR_POOL) and cidr.num_addresses >= 1024  # type: ignore[arg-type]
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route"], capture_output=True,
                                       check=True).stdout)
    for route in routes:
        if route.get("dst", "default") != "default":
            assert not cidr.overlaps(ipaddress.ip_network(route["dst"], strict=False))
    assert ipaddress.ip_network(free_pod_cidr(5)).prefixlen == 24


def test_breakdown_takes_watch_marks_and_event_stamps() -> None:
    watch = PodWatch.__new__(PodWatch)
    watch.pods = {"a": PodTimes(sent=10.0, answered=10.01, bound=10.05, first_status=10.1,
                                pod_ip=10.2, running=10.5, ready=10.5)}
    stages = breakdown(watch, ["a", "missing"],
                       {"a": {"Pulled": 10.25, "Created": 10.3, "Started": 10.45}})
    assert stages["scheduled"]["p50_s"] == pytest.approx(0.05)
    assert stages["network_setup"]["p50_s"] == pytest.approx(0.1)
    assert stages["runtime_start"]["p50_s"] == pytest.approx(0.15)
    assert stages["status_running"]["p50_s"] == pytest.approx(0.05)
    assert all(s["n"] == 1 for s in stages.values())


def test_targets_say_met_or_not() -> None:
    report = {"baseline": {"p50_s": 0.05},
              "latency": {"create_to_running_ready": {"p50_s": 0.6, "p99_s": 1.0}},
              "burst": {"all_running_s": None}}
    got = targets(report)
    assert got["latency_p50_s"]["met"] is False and got["latency_p99_s"]["met"] is True
    assert got["latency_p50_over_baseline_p50"] == 12.0
    assert got["burst_all_running_s"]["met"] is None


def _leftovers(prefix: str, work_dir: str) -> dict[str, object]:
    conmon = subprocess.run(["pgrep", "-f", f"conmon.*{work_dir}"], capture_output=True,
                            text=True).stdout.split()
    mounts = [line for line in Path("/proc/self/mounts").read_text().splitlines()
              if work_dir in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True,
                            text=True).stdout
    return {"conmon": conmon, "mounts": mounts,
            "bridge": Path(f"/sys/class/net/{prefix}0").exists(),
            "netns": sorted(p.name for p in Path("/run/netns").glob(f"{prefix}-*"))
            if Path("/run/netns").is_dir() else [],
            "nft": [t for t in tables.split() if t.startswith(prefix)],
            "cgroup": Path(f"/sys/fs/cgroup/memory/{prefix}").exists()
            or Path(f"/sys/fs/cgroup/{prefix}").exists(),
            "work_dir": Path(work_dir).exists()}


@root_only
@pytest.mark.slow
def test_bench_pods_small_run_reports_every_phase_and_leaves_nothing(tmp_path: Path) -> None:
    output = tmp_path / "report.json"
    result = subprocess.run(
        [*kubevisor_command(), "bench", "pods", "--baseline-n", "3", "--latency-pods", "5",
         "--latency-rate", "5", "--burst-pods", "5", "--density-pods", "10", "--timeout", "120",
         "--output", str(output)],
        capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert json.loads(output.read_text()) == report
    assert "latency: 5/5 running and ready" in result.stderr  # progress on stderr

    base = report["baseline"]
    assert base["n"] == 3 and 0 < base["p50_s"] <= base["max_s"] < 10

    lat = report["latency"]
    assert (lat["pods"], lat["create_errors"], lat["running_and_ready"]) == (5, {}, 5)
    total = lat["create_to_running_ready"]
    assert 0 < total["p50_s"] <= total["p99_s"] <= total["max_s"] < 120
    stages = lat["stages"]
    for stage in ("scheduled", "network_setup", "runtime_start", "status_running"):
        assert stages[stage]["n"] == 5 and stages[stage]["p50_s"] >= 0, stage
    assert stages["scheduled"]["p50_s"] <= total["p50_s"]

    burst = report["burst"]
    assert (burst["running"], burst["create_errors"]) == (5, {})
    assert 0 < burst["all_running_s"] < 120

    dens = report["density"]
    assert (dens["running"], dens["create_errors"]) == (10, {})
    after = dens["after"]
    assert after["conmon"]["processes"] == 10 and after["containers"]["processes"] >= 10
    assert after["agent"]["rss_mib"] > 10 and after["apiserver"]["rss_mib"] > 10
    assert dens["per_pod_mib"]["conmon_and_container_pss"] > 0
    assert dens["per_pod_mib"]["pods_with_a_container"] == 10 and not dens["stalled"]
    assert dens["agent_cpu_s"] >= 0

    for phase in ("latency", "burst", "density"):
        assert report[phase]["cleanup"] == {**report[phase]["cleanup"],
                                            "pods_left": 0, "conmon_left": 0}, phase
    assert set(report["targets"]) >= {"latency_p50_s", "latency_p99_s", "burst_all_running_s",
                                      "latency_p50_over_baseline_p50"}
    assert all(isinstance(t["met"], bool) for k, t in report["targets"].items()
               if isinstance(t, dict))

    assert report["teardown"]["clean"] is True, report["teardown"]
    prefix = report["cluster"]["network_prefix"]
    work_dir = report["cluster"]["work_dir"]
    assert _leftovers(prefix, work_dir) == {"conmon": [], "mounts": [], "bridge": False,
                                           "netns": [], "nft": [], "cgroup": False,
                                           "work_dir": False}
