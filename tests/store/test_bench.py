"""The store micro-benchmark runs and reports sane figures (SQLite)."""

from __future__ import annotations

from pathlib import Path

from kubevisor.store.bench import RANGE_KEYS, bench_store
from kubevisor.store.sqlite import SqliteStore


async def test_bench_store_reports_figures(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.start()
    try:
        figures = await bench_store(store, n=300, concurrency=8, value_size=100)
        assert (await store.range("/")).count == RANGE_KEYS
    finally:
        await store.close()
    assert figures["store"] == "SqliteStore" and figures["n"] == 300
    for name in ("puts_per_s", "gets_per_s", "range_ms", "put_p99_ms", "get_p50_ms", "watch_p99_ms"):
        assert figures[name] > 0, name
    assert figures["put_p50_ms"] <= figures["put_p99_ms"]
