"""The OCI runtime's command line (runc or crun), one call per method.

Used by :mod:`~kubevisor.runtime.oci.runtime`, ``detect`` and ``exec``.
A :class:`RuntimeCommand` knows the argv prefix that runs the runtime on
this host (found by detection; for crun on a hybrid host it is wrapped so
that crun sees a v1 host) and the state root. Failures are translated here,
where they enter: a non-zero exit becomes
:class:`~kubevisor.runtime.errors.ContainerError` (or
:class:`~kubevisor.runtime.errors.ContainerNotFoundError`) carrying the
runtime's stderr.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubevisor.runtime.errors import ContainerError, ContainerNotFoundError

_NOT_FOUND = re.compile(
    r"does not exist|no such container|container .* not found"
    r"|error opening file `[^`]*/status`: No such file",  # crun, when its state dir is gone
    re.IGNORECASE)
_NOT_RUNNING = re.compile(r"not running|container not running|is not running|process already finished",
                          re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def message(self) -> str:
        return clean_stderr(self.stderr)


def clean_stderr(raw: bytes) -> str:
    """The runtime's stderr as one readable line (runc logs logfmt lines;
    keep their ``msg=`` text)."""
    lines = []
    for line in raw.decode(errors="replace").splitlines():
        match = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
        lines.append(match.group(1).replace('\\"', '"') if match else line.strip())
    return "; ".join(part for part in lines if part)


async def run_command(argv: Sequence[str], *, timeout: float = 60.0,
                      stdin: bytes | None = None, detached: bool = False) -> Result:
    """Run ``argv`` to completion and collect its output. ``detached`` is for
    commands whose children keep the stdio they inherit (``create``): their
    stdout is discarded and stderr goes through a file, so completion means
    the command's exit rather than the end of its pipes."""
    if detached:
        with tempfile.TemporaryFile() as err_file:
            proc = await _spawn(argv, stdin=asyncio.subprocess.DEVNULL,
                                stdout=asyncio.subprocess.DEVNULL, stderr=err_file)
            await _wait(proc, argv, timeout)
            err_file.seek(0)
            assert proc.returncode is not None
            return Result(proc.returncode, b"", err_file.read())
    proc = await _spawn(argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await _wait(proc, argv, timeout, stdin)
    assert proc.returncode is not None
    return Result(proc.returncode, out, err)


async def _spawn(argv: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(*argv, **kwargs)
    except OSError as exc:
        raise ContainerError(f"cannot run {argv[0]}: {exc}") from exc


async def _wait(proc: asyncio.subprocess.Process, argv: Sequence[str], timeout: float,
                stdin: bytes | None = None) -> tuple[bytes, bytes]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise ContainerError(f"{argv[0]} timed out after {timeout:.0f}s") from exc
    return out or b"", err or b""


@dataclass(frozen=True, slots=True)
class RuntimeCommand:
    """``prefix`` runs the runtime binary (plus any global flags); ``root``
    is its state directory (``--root``)."""

    name: str
    prefix: tuple[str, ...]
    root: str

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, "--root", self.root, *args]

    async def call(self, *args: str, container_id: str, timeout: float = 60.0,
                   detached: bool = False) -> Result:
        """Run one subcommand; raise on failure with the runtime's stderr."""
        result = await run_command(self.argv(*args), timeout=timeout, detached=detached)
        if result.returncode != 0:
            raise self.error(args[0], container_id, result)
        return result

    def error(self, verb: str, container_id: str, result: Result) -> ContainerError:
        message = f"{self.name} {verb} {container_id}: {result.message or f'exit status {result.returncode}'}"
        if _NOT_FOUND.search(result.message):
            return ContainerNotFoundError(message)
        return ContainerError(message)

    async def create(self, container_id: str, *, bundle: str, pid_file: str) -> None:
        await self.call("create", "--bundle", bundle, "--pid-file", pid_file, container_id,
                        container_id=container_id, detached=True)

    async def start(self, container_id: str) -> None:
        await self.call("start", container_id, container_id=container_id)

    async def kill(self, container_id: str, signum: int, *, all_processes: bool = False) -> None:
        args = ["kill"]
        if all_processes:
            args.append("--all")
        await self.call(*args, container_id, str(signum), container_id=container_id)

    async def delete(self, container_id: str) -> None:
        """``delete --force``; a container the runtime does not know is fine."""
        result = await run_command(self.argv("delete", "--force", container_id))
        if result.returncode != 0 and not _NOT_FOUND.search(result.message):
            raise self.error("delete", container_id, result)

    async def state(self, container_id: str) -> dict[str, Any] | None:
        """The runtime's ``state`` JSON, or None when it does not know the id."""
        result = await run_command(self.argv("state", container_id))
        if result.returncode != 0:
            if _NOT_FOUND.search(result.message):
                return None
            raise self.error("state", container_id, result)
        try:
            data: dict[str, Any] = json.loads(result.stdout)
        except ValueError as exc:
            raise ContainerError(f"{self.name} state {container_id}: bad JSON") from exc
        return data


def is_not_running(error: ContainerError) -> bool:
    """Whether a runtime error says the container has already stopped."""
    return bool(_NOT_RUNNING.search(str(error)))
