"""``kubevisor bench api`` end to end (small sizes): its own server, real
HTTPS, worker processes; the report must account for every request."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kubevisor.cli.benchapi import percentile, summary_ms
from tests.support.server import kubevisor_command


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    assert summary_ms([1.0, 2.0])["n"] == 2


@pytest.mark.slow
def test_bench_api_reports_every_phase(tmp_path: Path) -> None:
    output = tmp_path / "report.json"
    result = subprocess.run(
        [*kubevisor_command(), "bench", "api", "--pods", "300", "--gets", "600", "--rate", "120",
         "--rate-seconds", "1", "--watchers", "6", "--watch-events", "20", "--watch-rate", "40",
         "--store-puts", "300", "--list-repeats", "2", "--output", str(output)],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert json.loads(output.read_text()) == report

    assert report["store"]["puts_per_s"] > 0
    create = report["create"]
    assert (create["count"], create["errors"]) == (300, {})
    assert create["per_s"] > 0 and create["p99_ms"] >= create["p50_ms"] > 0
    assert create["client_cpu_s"] > 0 and create["server_cpu_s"] > 0
    assert (report["get"]["count"], report["get"]["errors"]) == (600, {})
    for kind in ("json", "table"):
        listed = report["list"][kind]
        assert listed["statuses"] == [200] and listed["items"] == 300, kind
    rate = report["mutating_at_rate"]
    assert rate["sent"] == 120 and rate["n"] == 120 and rate["errors"] == {}
    assert set(rate["by_verb"]) == {"create", "patch", "delete"}
    watch = report["watch"]
    assert watch["writes"] == 20
    assert watch["deliveries"] == watch["expected_deliveries"] == 120
    assert watch["bad_lines"] == 0
    assert set(report["targets"]) == {
        "creates_per_s", "gets_per_s", "mutating_p99_ms_at_rate", "list_10k_pods_s", "watch_p99_ms",
    }
    assert report["api_overhead"]["store_over_api"] > 0
