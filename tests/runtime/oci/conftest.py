"""Fixtures for the OCI runtime driver's tests: a busybox root filesystem
(built once per session from Debian's static busybox), the runtimes
detected on this host (once per session), and a fresh driver per test on
its own state directory, parametrized over every detected runtime.

Shared test-image helpers live here: :func:`build_busybox_rootfs`,
:func:`spec`, :func:`read_log`, :func:`wait_for`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubevisor.runtime.oci import OciRuntime
from kubevisor.runtime.oci.detect import Detection, detect
from kubevisor.runtime.types import ContainerSpec

BUSYBOX = "/bin/busybox"
RUNTIMES = ("runc", "crun")
CRI_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) ([FP]) (.*)$")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="OCI runtimes need root here")
needs_busybox = pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static not installed")


def build_busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem: busybox and its applets in /bin, the
    usual empty directories, and /etc/passwd and /etc/group for root and nobody."""
    bin_dir = dest / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True)
    for applet in applets.stdout.split():
        if applet != "busybox" and "/" not in applet:
            (bin_dir / applet).symlink_to("busybox")
    for name in ("proc", "sys", "dev", "tmp", "etc", "root", "var", "work"):
        (dest / name).mkdir(exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return dest


def spec(rootfs: Path, tmp_path: Path, args: list[str], **kwargs: Any) -> ContainerSpec:
    """A ContainerSpec with a unique id and a log under ``tmp_path``."""
    container_id = kwargs.pop("id", f"t-{uuid.uuid4().hex[:10]}")
    log_path = kwargs.pop("log_path", str(tmp_path / "logs" / f"{container_id}.log"))
    return ContainerSpec(id=container_id, rootfs=str(rootfs), args=args, log_path=log_path, **kwargs)


def read_log(path: str) -> list[tuple[str, str]]:
    """(stream, line) for each full line of a CRI-format log."""
    out = []
    if not os.path.exists(path):
        return out
    for raw in Path(path).read_text().splitlines():
        match = CRI_LINE.match(raw)
        assert match, f"not a CRI log line: {raw!r}"
        if match.group(3) == "F":
            out.append((match.group(2), match.group(4)))
    return out


async def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0,
                   interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static not installed")
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def cgroup_parent() -> Iterator[str]:
    """A cgroup parent of this session's own; its directories go at the end."""
    parent = f"/kubevisor-test-{uuid.uuid4().hex[:8]}"
    yield parent
    for root in Path("/sys/fs/cgroup").iterdir():
        candidate = root / parent.lstrip("/")
        if candidate.is_dir():
            for child in candidate.iterdir():
                if child.is_dir():
                    try:
                        child.rmdir()
                    except OSError:
                        pass
            try:
                candidate.rmdir()
            except OSError:
                pass


@pytest.fixture(scope="session")
def detection(tmp_path_factory: pytest.TempPathFactory, cgroup_parent: str) -> Detection:
    if os.geteuid() != 0:
        pytest.skip("OCI runtimes need root here")
    workdir = tmp_path_factory.mktemp("detect")
    return asyncio.run(detect(str(workdir), cgroup_parent=cgroup_parent))


@pytest.fixture(params=RUNTIMES)
def runtime_name(request: pytest.FixtureRequest, detection: Detection) -> str:
    name: str = request.param
    if name not in detection.profiles:
        pytest.skip(f"{name} not usable here: {detection.problems.get(name)}")
    return name


@pytest.fixture
async def runtime(runtime_name: str, detection: Detection, tmp_path: Path,
                  cgroup_parent: str) -> AsyncIterator[OciRuntime]:
    """A driver on a fresh state directory; whatever the test leaves is removed."""
    rt = OciRuntime(str(tmp_path / "state"), detection.profiles[runtime_name],
                    cgroup_parent=cgroup_parent)
    yield rt
    for state in await rt.list():
        await rt.remove(state.id)
