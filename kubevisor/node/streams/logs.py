"""Container logs as ``kubectl logs`` reads them from kubelet.

The runtime (conmon) writes each container attempt's stdout and stderr to a
CRI-format file, one record a line: ``<RFC3339Nano> <stdout|stderr> <F|P>
<content>``, where ``P`` marks a piece of a longer line continued by the
next record. This module parses those files and applies the pod log options
the way kubelet's ``ReadLogs`` does: ``tailLines`` counts the file's last
lines (records), ``sinceSeconds``/``sinceTime`` drop older records,
``timestamps`` prefixes each record with its time (nine fixed fraction
digits), ``limitBytes`` cuts the output at that many bytes, and ``follow``
keeps reading as the file grows until the container has stopped (or a newer
attempt has started) and the file is drained. Partial records are written
without their newline, so a split line comes out whole; stdout and stderr
interleave in file order.

:func:`parse_options` (the query) and :class:`LogWriter` (one record → the
bytes to send) are pure; :func:`read_log` is the async reader called by
:mod:`kubevisor.node.streams.server`.
"""

from __future__ import annotations

import asyncio
import calendar
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from kubevisor.node.streams.errors import bad_request

#: How often a followed file is checked for growth.
POLL_SECONDS = 0.1
#: Bytes sent at most in one chunk.
CHUNK_BYTES = 64 * 1024
_BLOCK = 4096
_TS = re.compile(rb"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The pod log options (``v1.PodLogOptions``) that reach the node."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    #: The last N records; -1 for all.
    tail_lines: int = -1
    #: Stop after this many bytes; -1 for no limit.
    limit_bytes: int = -1
    #: Drop records older than this (Unix nanoseconds).
    since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One parsed line of a CRI log file."""

    time_ns: int  # Unix nanoseconds
    offset: int  # the writer's UTC offset, in seconds
    stream: str  # "stdout" or "stderr"
    partial: bool
    content: bytes  # with its newline when the record is full


# ------------------------------------------------------------------ options


def _bool(query: Mapping[str, Sequence[str]], name: str) -> bool:
    values = query.get(name) or []
    if not values:
        return False
    value = values[0]
    if value in _TRUE or value == "":
        return True
    if value in _FALSE:
        return False
    raise bad_request(f'invalid value "{value}" for {name}: must be a boolean')


def _int(query: Mapping[str, Sequence[str]], name: str, *, minimum: int) -> int | None:
    values = query.get(name) or []
    if not values:
        return None
    try:
        number = int(values[0])
    except ValueError:
        raise bad_request(f'{name}: Invalid value: "{values[0]}": must be an integer') from None
    if number < minimum:
        word = "greater than or equal to 0" if minimum == 0 else "greater than 0"
        raise bad_request(f"{name}: Invalid value: {number}: must be {word}")
    return number


def parse_options(query: Mapping[str, Sequence[str]], *, now: float) -> LogOptions:
    """The options of a ``/containerLogs`` query (names as kubectl sends
    them), validated as kube-apiserver does; ``now`` in Unix seconds."""
    since_seconds = _int(query, "sinceSeconds", minimum=1)
    since_time_text = (query.get("sinceTime") or [""])[0]
    if since_seconds is not None and since_time_text:
        raise bad_request("at most one of `sinceTime` or `sinceSeconds` may be specified")
    since_ns: int | None = None
    if since_seconds is not None:
        since_ns = int((now - since_seconds) * 1e9)
    if since_time_text:
        parsed = parse_timestamp(since_time_text.encode())
        if parsed is None:
            raise bad_request(f'sinceTime: Invalid value: "{since_time_text}": '
                              "must be an RFC3339 time")
        since_ns = parsed[0]
    tail = _int(query, "tailLines", minimum=0)
    limit = _int(query, "limitBytes", minimum=1)
    return LogOptions(follow=_bool(query, "follow"), previous=_bool(query, "previous"),
                      timestamps=_bool(query, "timestamps"),
                      tail_lines=-1 if tail is None else tail,
                      limit_bytes=-1 if limit is None else limit, since_ns=since_ns)


# ------------------------------------------------------------------ records


def parse_timestamp(text: bytes) -> tuple[int, int] | None:
    """(Unix nanoseconds, UTC offset in seconds) of an RFC3339 time with an
    optional fraction of up to nine digits, or None."""
    match = _TS.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or b"").ljust(9, b"0")
    zone = match.group(8)
    offset = 0
    if zone != b"Z":
        sign = -1 if zone[:1] == b"-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    return (seconds - offset) * 1_000_000_000 + int(fraction), offset


def format_timestamp(time_ns: int, offset: int) -> bytes:
    """kubelet's output form: RFC3339 with nine fraction digits, in the
    zone the record was written in (``Z`` for UTC)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    local = seconds + offset
    days, rest = divmod(local, 86400)
    year, month, day = _civil(days)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        zh, zm = divmod(abs(offset) // 60, 60)
        zone = f"{sign}{zh:02d}:{zm:02d}"
    return (f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
            f".{nanos:09d}{zone}").encode()


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01 (proleptic Gregorian)."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month, day


def parse_line(raw: bytes) -> LogRecord | None:
    """One CRI log line (with or without its newline), or None when it is
    not one. Tags after ``:`` are ignored, as kubelet does."""
    parts = raw.split(b" ", 3)
    if len(parts) < 4:
        return None
    stamp, stream, tags, content = parts
    parsed = parse_timestamp(stamp)
    if parsed is None or stream not in (b"stdout", b"stderr"):
        return None
    partial = tags.split(b":", 1)[0] == b"P"
    if partial and content.endswith(b"\n"):
        content = content[:-1]
    return LogRecord(time_ns=parsed[0], offset=parsed[1], stream=stream.decode(),
                     partial=partial, content=content)


class LogWriter:
    """Turns records into output bytes under the options' since, timestamps
    and byte limit; ``done`` once the limit is reached."""

    def __init__(self, options: LogOptions) -> None:
        self.options = options
        self.remaining = options.limit_bytes if options.limit_bytes >= 0 else -1
        self.done = False

    def render(self, record: LogRecord) -> bytes:
        if self.done:
            return b""
        if self.options.since_ns is not None and record.time_ns < self.options.since_ns:
            return b""
        line = record.content
        if self.options.timestamps:
            line = format_timestamp(record.time_ns, record.offset) + b" " + line
        if self.remaining >= 0:
            line = line[:self.remaining]
            self.remaining -= len(line)
            if self.remaining <= 0:
                self.done = True
        return line


def tail_start(f: BinaryIO, lines: int) -> int:
    """The offset where the file's last ``lines`` newline-ended lines
    begin (an unterminated last line is not counted); 0 for all."""
    if lines < 0:
        return 0
    size = f.seek(0, 2)
    count = 0
    right = size
    while right > 0:
        left = max(0, right - _BLOCK)
        f.seek(left)
        block = f.read(right - left)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            count += 1
            if count > lines:
                return left + index + 1
        right = left
    return 0


def render_all(data: bytes, options: LogOptions) -> bytes:
    """The whole answer for a log file's content without follow (a pure
    helper for tests and one-shot reads)."""
    import io

    buffer = io.BytesIO(data)
    start = tail_start(buffer, options.tail_lines)
    writer = LogWriter(options)
    out = []
    remaining = options.tail_lines
    for raw in data[start:].splitlines(keepends=True):
        if writer.done or remaining == 0:
            break
        record = parse_line(raw)
        if record is None:
            continue
        out.append(writer.render(record))
        if remaining > 0:
            remaining -= 1
    return b"".join(out)


# ------------------------------------------------------------------ reading


async def read_log(path: str, options: LogOptions, *,
                   running: Callable[[], Awaitable[bool]] | None = None,
                   superseded: Callable[[], bool] | None = None,
                   poll: float = POLL_SECONDS) -> AsyncIterator[bytes]:
    """The log at ``path`` under ``options``, in chunks. With ``follow`` the
    file is read as it grows until ``running()`` says the container has
    stopped or ``superseded()`` that a newer attempt exists; then what is
    left is drained and the stream ends. Without ``running`` a followed
    log is treated as stopped."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    try:
        f.seek(tail_start(f, options.tail_lines))
        limited = options.tail_lines >= 0 and not options.follow
        remaining = options.tail_lines
        writer = LogWriter(options)
        ending = False
        out: list[bytes] = []
        size = 0
        while True:
            if writer.done or (limited and remaining == 0):
                break
            raw = f.readline()
            if raw.endswith(b"\n") or (raw and not options.follow):
                record = parse_line(raw)
                if record is not None:
                    chunk = writer.render(record)
                    if chunk:
                        out.append(chunk)
                        size += len(chunk)
                    if limited:
                        remaining -= 1
                if size >= CHUNK_BYTES:
                    yield b"".join(out)
                    out, size = [], 0
                continue
            # End of what is written (maybe half a line, read again later).
            if raw:
                f.seek(-len(raw), 1)
            if out:
                yield b"".join(out)
                out, size = [], 0
            if not options.follow or ending:
                break
            if running is None or not await running() or (superseded is not None and superseded()):
                ending = True  # one more pass drains what was written meanwhile
                continue
            await asyncio.sleep(poll)
        if out:
            yield b"".join(out)
    finally:
        f.close()
