"""A micro-benchmark of a raw store: creates/s, gets/s, range latency.

``kubevisor bench api`` calls :func:`bench_store` on a fresh store in the
same run as its HTTP benchmark, so the API's overhead reads as a ratio.
``python -m kubevisor.store.bench [--store URL]`` prints the figures as
JSON (a temporary SQLite file unless ``--store`` names another store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kubevisor.store.base import Store

RANGE_KEYS = 10_000


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _run(
    count: int, concurrency: int, op: Callable[[int], Awaitable[object]]
) -> tuple[float, list[float]]:
    """Run ``op(0..count-1)`` on ``concurrency`` tasks; (seconds, latencies in s)."""
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            began = time.perf_counter()
            await op(index)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


async def bench_store(
    store: Store, *, n: int = 5000, concurrency: int = 16, value_size: int = 1500
) -> dict[str, Any]:
    """Create ``n`` keys of ``value_size`` bytes from ``concurrency`` tasks
    (one watcher timing each create's event from the call), get them back,
    then time a range over 10,000 such keys (topping the key count up,
    untimed, when ``n`` is smaller). The store must be started; the keys
    stay, under a fresh ``/bench-<id>/`` prefix. Returns figures by name:
    ``puts_per_s``, ``put_p50_ms``/``put_p99_ms``, ``watch_p50_ms``/
    ``watch_p99_ms``, ``gets_per_s``, ``get_p50_ms``/``get_p99_ms``,
    ``range_ms`` (median of 3 ranges of ``range_keys`` keys)."""
    assert n > 0 and concurrency > 0, "bench_store needs n > 0 and concurrency > 0"
    prefix = f"/bench-{uuid.uuid4().hex[:8]}/"
    value = (b"0123456789abcdef" * (value_size // 16 + 1))[:value_size]

    def key(index: int) -> str:
        return f"{prefix}{index:08d}"

    # One watcher on the prefix measures write-to-event delivery latency.
    submitted: dict[str, float] = {}
    delivered: list[float] = []
    watcher = store.watch(prefix, after_revision=await store.current_revision())

    async def consume() -> None:
        while len(delivered) < n:
            for event in await watcher.__anext__():
                delivered.append(time.perf_counter() - submitted[event.kv.key])

    def create(index: int) -> Awaitable[object]:
        submitted[key(index)] = time.perf_counter()
        return store.create(key(index), value)

    consumer = asyncio.create_task(consume())
    try:
        put_seconds, put_latencies = await _run(n, concurrency, create)
        await asyncio.wait_for(consumer, 30)
    finally:
        consumer.cancel()
        await watcher.close()
    get_seconds, get_latencies = await _run(n, concurrency, lambda i: store.get(key(i)))
    if n < RANGE_KEYS:
        await _run(RANGE_KEYS - n, concurrency, lambda i: store.create(key(n + i), value))
    range_seconds = []
    for _ in range(3):
        began = time.perf_counter()
        result = await store.range(prefix, limit=RANGE_KEYS)
        range_seconds.append(time.perf_counter() - began)
        assert len(result.kvs) == RANGE_KEYS, f"range returned {len(result.kvs)} keys"
    return {
        "store": type(store).__name__,
        "n": n,
        "concurrency": concurrency,
        "value_size": value_size,
        "puts_per_s": round(n / put_seconds, 1),
        "put_p50_ms": round(_percentile(put_latencies, 0.50) * 1000, 3),
        "put_p99_ms": round(_percentile(put_latencies, 0.99) * 1000, 3),
        "watch_p50_ms": round(_percentile(delivered, 0.50) * 1000, 3),
        "watch_p99_ms": round(_percentile(delivered, 0.99) * 1000, 3),
        "gets_per_s": round(n / get_seconds, 1),
        "get_p50_ms": round(_percentile(get_latencies, 0.50) * 1000, 3),
        "get_p99_ms": round(_percentile(get_latencies, 0.99) * 1000, 3),
        "range_keys": RANGE_KEYS,
        "range_ms": round(statistics.median(range_seconds) * 1000, 2),
    }


async def _main(url: str, n: int, concurrency: int, value_size: int) -> dict[str, Any]:
    from kubevisor.store import open_store

    with tempfile.TemporaryDirectory(prefix="kv-bench-") as tmp:
        store = open_store(url, data_dir=Path(tmp))
        await store.start()
        try:
            return await bench_store(store, n=n, concurrency=concurrency, value_size=value_size)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark a raw kubevisor store.")
    parser.add_argument("--store", default="sqlite", help="sqlite (a temp file) or etcd://HOST:PORT")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--value-size", type=int, default=1500)
    args = parser.parse_args()
    figures = asyncio.run(_main(args.store, args.n, args.concurrency, args.value_size))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
