"""``kubevisor bench scheduler`` end to end at a small size: its own server,
the scheduler alone in a child process, a pod-creating process; every pod
is bound and the report carries the figures."""

from __future__ import annotations

import pytest

from kubevisor.cli.benchscheduler import SchedulerBenchOptions, run_scheduler_bench


@pytest.mark.slow
async def test_bench_scheduler_small() -> None:
    report = await run_scheduler_bench(SchedulerBenchOptions(
        nodes=30, pods=60, conns=4, controllers="scheduler", timeout_s=60))
    sched = report["scheduling"]
    assert sched["bound"] == 60 and report["create"]["count"] == 60
    assert sched["pods_bound_per_s"] > 0
    assert report["cpu_s"]["controllers"] is not None
    assert report["target"]["pods_bound_per_s"] == ">= 1000"
