"""Sampling profiles of the server during benchmark phases, with py-spy.

``kubevisor bench api --profile DIR`` (see :mod:`kubevisor.cli.benchapi`)
attaches ``py-spy record`` (not a dependency: install it with ``pip install
py-spy``; it needs ptrace rights, e.g. root) to the server process for each
phase, writes the collapsed stacks to ``DIR/<phase>.txt`` (flamegraph.pl
and speedscope read them) and summarises them: the functions with the most
samples on top of the stack (self) and, among kubevisor's own functions,
the most samples anywhere on the stack (inclusive).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

RATE_HZ = 200
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")


class ProfilerError(RuntimeError):
    """py-spy is missing or could not attach."""


def find_py_spy() -> str:
    """py-spy next to this Python (a venv) or on PATH."""
    candidate = Path(sys.executable).parent / "py-spy"
    found = str(candidate) if candidate.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfilerError("--profile needs py-spy: pip install py-spy")
    return found


class Profiler:
    """Records one collapsed-stack file per phase of the process ``pid``."""

    def __init__(self, pid: int, out_dir: Path) -> None:
        self.pid = pid
        self.out_dir = out_dir
        self.py_spy = find_py_spy()
        out_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def phase(self, name: str, report: dict[str, Any]) -> AsyncIterator[None]:
        """Sample while the body runs; put the summary in ``report[name]``."""
        path = self.out_dir / f"{name}.txt"
        proc = await asyncio.create_subprocess_exec(
            self.py_spy, "record", "--pid", str(self.pid), "--rate", str(RATE_HZ),
            "--format", "raw", "--output", str(path), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(0.5)  # attach before the load starts
        if proc.returncode is not None:
            assert proc.stderr is not None
            message = (await proc.stderr.read()).decode(errors="replace").strip()
            raise ProfilerError(f"py-spy could not attach to {self.pid}: {message}")
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            await proc.communicate()
            if path.exists():
                report[name] = {"file": str(path), **summarise(path)}


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"].split("site-packages/")[-1]
    if "/kubevisor/" in file:
        file = "kubevisor/" + file.rsplit("/kubevisor/", 1)[1]
    return f"{match['func']} ({file})"


def summarise(path: Path, *, top: int = 15) -> dict[str, Any]:
    """Top functions by self and (kubevisor's own) inclusive share of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "(kubevisor/" in frame and "(kubevisor/cli/" not in frame:
                inclusive[frame] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[round(100 * n / total, 1), f] for f, n in counter.most_common(top)] if total else []

    return {"samples": total, "top_self_pct": share(own), "top_inclusive_pct": share(inclusive)}
