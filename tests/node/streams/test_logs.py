"""CRI log parsing and the pod log options, as kubelet applies them, on
hand-written log files (pure, plus the async reader on real files)."""

from __future__ import annotations

import asyncio
import calendar
from pathlib import Path

import pytest

from kubevisor.node.streams.errors import StreamError
from kubevisor.node.streams.logs import (
    LogOptions,
    format_timestamp,
    parse_line,
    parse_options,
    parse_timestamp,
    read_log,
    render_all,
)

LOG = (
    b"2026-01-02T03:04:05.000000001Z stdout F one\n"
    b"2026-01-02T03:04:06.5+00:00 stderr F two (stderr)\n"
    b"2026-01-02T03:04:07.000000000Z stdout P thr\n"
    b"2026-01-02T03:04:07.100000000Z stdout P e\n"
    b"2026-01-02T03:04:07.200000000Z stdout F e joined\n"
    b"not a log line\n"
    b"2026-01-02T05:04:08.123456789+02:00 stdout F four\n"
)
T0 = calendar.timegm((2026, 1, 2, 3, 4, 5, 0, 0, 0))


def test_parse_line_fields() -> None:
    record = parse_line(b"2026-01-02T03:04:05.000000001Z stdout F one\n")
    assert record is not None
    assert (record.time_ns, record.offset, record.stream, record.partial, record.content) == (
        T0 * 10**9 + 1, 0, "stdout", False, b"one\n")
    partial = parse_line(b"2026-01-02T03:04:07Z stderr P:x piece\n")
    assert partial is not None and partial.partial and partial.content == b"piece"
    assert parse_line(b"2026-01-02T03:04:07Z stdin F x\n") is None
    assert parse_line(b"yesterday stdout F x\n") is None
    assert parse_line(b"2026-01-02T03:04:07Z stdout\n") is None


def test_timestamps_round_trip_with_zone() -> None:
    ns, offset = parse_timestamp(b"2026-01-02T05:04:08.123456789+02:00")  # type: ignore[misc]
    assert ns == (T0 + 3) * 10**9 + 123456789 and offset == 7200
    assert format_timestamp(ns, offset) == b"2026-01-02T05:04:08.123456789+02:00"
    assert format_timestamp(ns, 0) == b"2026-01-02T03:04:08.123456789Z"
    assert format_timestamp(T0 * 10**9, -3600 * 5 - 1800) == b"2026-01-01T21:34:05.000000000-05:30"
    assert parse_timestamp(b"2026-13-02T03:04:05Z") is None
    # Leap day, far dates.
    leap = parse_timestamp(b"2024-02-29T23:59:59.5Z")
    assert leap is not None and format_timestamp(*leap) == b"2024-02-29T23:59:59.500000000Z"


def test_everything_in_file_order_with_partials_joined() -> None:
    assert render_all(LOG, LogOptions()) == b"one\ntwo (stderr)\nthree joined\nfour\n"


def test_tail_counts_records_of_the_file() -> None:
    # kubelet counts file lines: the last 3 are the final "F e joined", the
    # malformed line (skipped when parsed) and "four".
    assert render_all(LOG, LogOptions(tail_lines=3)) == b"e joined\nfour\n"
    assert render_all(LOG, LogOptions(tail_lines=1)) == b"four\n"
    assert render_all(LOG, LogOptions(tail_lines=0)) == b""
    assert render_all(LOG, LogOptions(tail_lines=100)) == render_all(LOG, LogOptions())


def test_timestamps_prefix_each_record() -> None:
    out = render_all(LOG, LogOptions(timestamps=True, tail_lines=4)).splitlines()
    assert out[0] == b"2026-01-02T03:04:07.100000000Z e2026-01-02T03:04:07.200000000Z e joined"
    assert out[1] == b"2026-01-02T05:04:08.123456789+02:00 four"


def test_since_drops_older_records() -> None:
    since = (T0 + 2) * 10**9
    assert render_all(LOG, LogOptions(since_ns=since)) == b"three joined\nfour\n"
    assert render_all(LOG, LogOptions(since_ns=(T0 + 3) * 10**9 + 123456789)) == b"four\n"
    assert render_all(LOG, LogOptions(since_ns=(T0 + 4) * 10**9)) == b""


def test_limit_bytes_cuts_exactly() -> None:
    assert render_all(LOG, LogOptions(limit_bytes=6)) == b"one\ntw"
    assert render_all(LOG, LogOptions(limit_bytes=4)) == b"one\n"
    assert render_all(LOG, LogOptions(limit_bytes=10_000)) == render_all(LOG, LogOptions())


def test_options_from_a_query() -> None:
    now = T0 + 100.0
    opts = parse_options({"follow": ["true"], "tailLines": ["5"], "timestamps": ["1"],
                          "limitBytes": ["9"], "previous": ["false"],
                          "sinceSeconds": ["10"]}, now=now)
    assert opts == LogOptions(follow=True, previous=False, timestamps=True, tail_lines=5,
                              limit_bytes=9, since_ns=int((now - 10) * 1e9))
    assert parse_options({"sinceTime": ["2026-01-02T03:04:06Z"]}, now=now).since_ns == (T0 + 1) * 10**9
    assert parse_options({}, now=now) == LogOptions()
    for bad in ({"tailLines": ["-1"]}, {"tailLines": ["x"]}, {"limitBytes": ["0"]},
                {"sinceSeconds": ["0"]}, {"follow": ["maybe"]}, {"sinceTime": ["yesterday"]},
                {"sinceSeconds": ["5"], "sinceTime": ["2026-01-02T03:04:06Z"]}):
        with pytest.raises(StreamError) as exc:
            parse_options(bad, now=now)
        assert exc.value.code == 400


async def _collect(path: Path, options: LogOptions, **kwargs: object) -> bytes:
    return b"".join([chunk async for chunk in read_log(str(path), options, **kwargs)])  # type: ignore[arg-type]


async def test_reader_matches_the_pure_rendering(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(LOG)
    for options in (LogOptions(), LogOptions(tail_lines=2), LogOptions(limit_bytes=7),
                    LogOptions(timestamps=True, since_ns=(T0 + 2) * 10**9)):
        assert await _collect(path, options) == render_all(LOG, options)
    assert await _collect(tmp_path / "missing.log", LogOptions()) == b""


async def test_follow_reads_growth_until_the_container_stops(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"2026-01-02T03:04:05Z stdout F first\n2026-01-02T03:04:05Z stdout P hal")
    alive = True

    async def running() -> bool:
        return alive

    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in read_log(str(path), LogOptions(follow=True, tail_lines=1),
                                    running=running, poll=0.01):
            got.append(chunk)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    assert b"".join(got) == b"first\n"  # the half-written record waits for its newline
    with path.open("ab") as f:
        f.write(b"f\n2026-01-02T03:04:06Z stdout F whole\n")
    await asyncio.sleep(0.1)
    assert b"".join(got) == b"first\nhalfwhole\n"  # P then F: one line
    assert not task.done()
    with path.open("ab") as f:  # written just before the container stopped
        f.write(b"2026-01-02T03:04:07Z stderr F last words\n")
    alive = False
    await asyncio.wait_for(task, 2)
    assert b"".join(got) == b"first\nhalfwhole\nlast words\n"


async def test_follow_ends_when_a_newer_attempt_appears(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"2026-01-02T03:04:05Z stdout F a\n")
    newer = False

    async def running() -> bool:
        return True

    task = asyncio.create_task(_collect(path, LogOptions(follow=True), running=running,
                                        superseded=lambda: newer, poll=0.01))
    await asyncio.sleep(0.05)
    assert not task.done()
    newer = True
    assert await asyncio.wait_for(task, 2) == b"a\n"
