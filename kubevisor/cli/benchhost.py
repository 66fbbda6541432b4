"""The host side of ``kubevisor bench pods``: the image, the raw OCI start
baseline, and what kubevisor's processes cost on this host.

Called by :mod:`kubevisor.cli.benchpods` (and :func:`measure` by
``bench/oci_start.py``). :func:`busybox_archive` writes an OCI image
archive of Debian's busybox-static (``/bin/busybox`` and its applets) with
no tool but Python, so the benchmark needs neither a registry nor umoci.
:func:`measure` times :meth:`OciRuntime.run` of containers started one
after another (the baseline a pod start is compared with).
:func:`processes` finds the apiserver, the node agent and its helpers,
conmon and the containers of one data dir in ``/proc``, and
:func:`memory` sums their RSS and PSS (``smaps_rollup``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import platform
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from kubevisor.runtime.types import ContainerRuntime

JSON = dict[str, Any]
BUSYBOX = Path("/bin/busybox")
_TICKS = os.sysconf("SC_CLK_TCK")
_MTIME = 1_704_067_200  # fixed, so the same busybox makes the same image
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


# -- the image -----------------------------------------------------------------


def _layer(busybox: Path) -> bytes:
    """An uncompressed layer tar: /bin/busybox, every applet as a symlink,
    /etc/passwd and /etc/group, /tmp."""
    applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, *, data: bytes | None = None, mode: int = 0o644,
                kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.type, info.linkname = _MTIME, mode, kind, link
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for d in ("bin", "etc", "root"):
            add(d, mode=0o755, kind=tarfile.DIRTYPE)
        add("tmp", mode=0o1777, kind=tarfile.DIRTYPE)
        add("bin/busybox", data=busybox.read_bytes(), mode=0o755)
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        add("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add("etc/group", data=b"root:x:0:\nnobody:x:65534:\n")
    return buf.getvalue()


def busybox_archive(dest: Path, name: str = "busybox:1", *, busybox: Path = BUSYBOX) -> Path:
    """An OCI image layout tar (as ``skopeo copy ... oci-archive:DEST:NAME``
    writes) of one busybox image named ``name``; ``sh`` is its command."""
    raw = _layer(busybox)
    layer = gzip.compress(raw, mtime=0)
    config = orjson.dumps({
        "architecture": _ARCH.get(platform.machine(), platform.machine()), "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"],
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]},
    })
    blobs: dict[str, bytes] = {}

    def desc(media_type: str, body: bytes) -> JSON:
        digest = hashlib.sha256(body).hexdigest()
        blobs[digest] = body
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(body)}

    manifest = orjson.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    })
    index = orjson.dumps({"schemaVersion": 2, "manifests": [{
        **desc("application/vnd.oci.image.manifest.v1+json", manifest),
        "annotations": {"org.opencontainers.image.ref.name": name}}]})
    with tarfile.open(dest, "w") as tar:
        def put(path: str, body: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(body), _MTIME
            tar.addfile(info, io.BytesIO(body))

        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for digest, body in blobs.items():
            put(f"blobs/sha256/{digest}", body)
        put("index.json", index)
    return dest


# -- the raw OCI start ---------------------------------------------------------


async def measure(runtime: ContainerRuntime, rootfs: str | Callable[[str], Any], *, n: int,
                  args: list[str], workdir: str) -> list[float]:
    """Seconds from ``run()`` call to running, for ``n`` containers started
    one after another; all are removed before returning. ``rootfs`` is one
    directory shared by all, or an async callable giving a fresh one per
    container id (prepared before the clock starts)."""
    from kubevisor.runtime.types import ContainerSpec

    samples: list[float] = []
    ids: list[str] = []
    try:
        for _ in range(n):
            container_id = f"bench-{uuid.uuid4().hex[:10]}"
            root = rootfs if isinstance(rootfs, str) else await rootfs(container_id)
            spec = ContainerSpec(id=container_id, rootfs=root, args=args,
                                 log_path=os.path.join(workdir, "logs", f"{container_id}.log"))
            began = time.perf_counter()
            state = await runtime.run(spec)
            samples.append(time.perf_counter() - began)
            ids.append(container_id)
            assert state.status == "running", state
    finally:
        for container_id in ids:
            with contextlib.suppress(Exception):
                await runtime.stop(container_id, grace_seconds=0)
            await runtime.remove(container_id)
    return samples


# -- processes and their cost --------------------------------------------------


@dataclass(slots=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: bytes
    cpu_s: float  # utime + stime
    children_cpu_s: float  # cutime + cstime (waited-for children)


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1: stat.rindex(")")]
    fields = stat.rsplit(")", 1)[1].split()
    return Proc(pid=pid, ppid=int(fields[1]), comm=comm, cmdline=cmdline,
                cpu_s=(int(fields[11]) + int(fields[12])) / _TICKS,
                children_cpu_s=(int(fields[13]) + int(fields[14])) / _TICKS)


def all_processes() -> dict[int, Proc]:
    out: dict[int, Proc] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (p := _read_proc(int(entry.name))) is not None:
            out[p.pid] = p
    return out


def descendants(procs: dict[int, Proc], roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        for c in children.get(pid, ()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


@dataclass(slots=True)
class Tree:
    """kubevisor's processes of one ``kubevisor up`` (pid ``server``)."""

    server: int | None = None
    controllers: int | None = None
    agent: int | None = None
    agent_helpers: list[int] = field(default_factory=list)  # the agent's other descendants
    conmon: list[int] = field(default_factory=list)
    containers: list[int] = field(default_factory=list)
    procs: dict[int, Proc] = field(default_factory=dict)


def processes(server_pid: int, data_dir: Path) -> Tree:
    """Find the processes of the ``kubevisor up`` at ``server_pid`` whose
    containers live under ``data_dir``."""
    procs = all_processes()
    tree = Tree(server=server_pid if server_pid in procs else None, procs=procs)
    for p in procs.values():
        if p.ppid == server_pid and b"kubevisor.cli.nodeagent" in p.cmdline:
            tree.agent = p.pid
        elif p.ppid == server_pid and b"kubevisor.cli.controllers" in p.cmdline:
            tree.controllers = p.pid
    marker = str(data_dir.resolve()).encode()
    tree.conmon = sorted(p.pid for p in procs.values() if p.comm == "conmon" and marker in p.cmdline)
    tree.containers = sorted(descendants(procs, tree.conmon))
    if tree.agent is not None:
        tree.agent_helpers = sorted(descendants(procs, [tree.agent]) - set(tree.conmon)
                                    - set(tree.containers))
    return tree


def memory(pids: Iterable[int]) -> JSON:
    """Summed RSS, PSS and USS (private pages) in MiB of ``pids`` (those still alive)."""
    rss = pss = uss = 0
    count = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss += int(rest.split()[0])
            elif key == "Pss":
                pss += int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                uss += int(rest.split()[0])
    return {"processes": count, "rss_mib": round(rss / 1024, 2), "pss_mib": round(pss / 1024, 2),
            "uss_mib": round(uss / 1024, 2)}


def cpu_s(tree: Tree, pid: int | None) -> float | None:
    p = tree.procs.get(pid) if pid is not None else None
    return None if p is None else round(p.cpu_s, 2)


def host_memory_mib() -> JSON:
    """MemTotal and MemAvailable of this host, MiB."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0])
    return {"total": round(values.get("MemTotal", 0) / 1024, 1),
            "available": round(values.get("MemAvailable", 0) / 1024, 1)}


def cgroup_memory_mib(cgroup_parent: str) -> float | None:
    """The memory charged to the containers' cgroup parent (v2 or v1), MiB."""
    rel = cgroup_parent.strip("/")
    for path in (Path("/sys/fs/cgroup") / rel / "memory.current",
                 Path("/sys/fs/cgroup/memory") / rel / "memory.usage_in_bytes",
                 Path("/sys/fs/cgroup/unified") / rel / "memory.current"):
        with contextlib.suppress(OSError, ValueError):
            return round(int(path.read_text()) / (1 << 20), 1)
    return None
