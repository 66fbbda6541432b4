"""Which OCI runtimes this host has and what each can enforce here.

Called once at agent start by :func:`kubevisor.runtime.oci.open_runtime`.
Nothing is assumed: for each installed runtime (``runc --version``,
``crun --version``) it tries the ways of running it that fit the host's
cgroup mode, in order of preference, by creating one tiny probe container
with CPU, memory and pids limits; the first way that creates wins, and the
limits it reports as enforced are those the kernel's cgroup files show for
the probe. On a hybrid host crun 1.x refuses to run whenever the unified
hierarchy has any controller (even with ``--cgroup-manager=disabled``), so
one way runs it in a private mount namespace where
``/sys/fs/cgroup/unified`` is unmounted: crun then sees a v1 host and
manages the v1 controllers as runc does.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kubevisor.runtime.errors import ContainerError
from kubevisor.runtime.oci import cgroups
from kubevisor.runtime.oci.bundle import build_config, milli_cpu_to_quota
from kubevisor.runtime.oci.command import RuntimeCommand, run_command
from kubevisor.runtime.types import ContainerSpec, Resources, RuntimeCapabilities

KNOWN_RUNTIMES = ("runc", "crun")
SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: What the probe container asks for, and reads back from the kernel.
PROBE_MEMORY = 96 * 1024 * 1024
PROBE_PIDS = 77
PROBE_CPU_MILLIS = 500

#: Runs the rest of the argv in a mount namespace without the unified hierarchy.
HIDE_UNIFIED = (
    "unshare", "--mount", "--propagation", "slave", "--",
    "/bin/sh", "-c", 'umount -l /sys/fs/cgroup/unified && exec "$0" "$@"',
)


@dataclass(frozen=True, slots=True)
class Way:
    """One way of invoking a runtime: ``prefix`` is the argv before
    ``--root``; ``cgroups`` says whether containers get a cgroupsPath."""

    label: str
    prefix: tuple[str, ...]
    cgroups: bool = True


@dataclass(frozen=True, slots=True)
class RuntimeProfile:
    """A runtime found usable on this host, and how to run it."""

    capabilities: RuntimeCapabilities
    path: str
    way: Way
    conmon: str

    @property
    def name(self) -> str:
        return self.capabilities.name

    def command(self, root: str) -> RuntimeCommand:
        return RuntimeCommand(self.name, self.way.prefix, root)


@dataclass(slots=True)
class Detection:
    """The outcome of :func:`detect`: usable runtimes, and why others are not."""

    cgroup_mode: cgroups.CgroupMode
    profiles: dict[str, RuntimeProfile] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SEARCH_PATH:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


async def runtime_version(path: str) -> str:
    """``1.1.5+ds1`` from ``runc --version`` (first line, third word)."""
    result = await run_command([path, "--version"], timeout=10)
    if result.returncode != 0:
        raise ContainerError(f"{path} --version: {result.message}")
    words = result.stdout.decode(errors="replace").splitlines()[0].split()
    return words[2] if len(words) >= 3 else words[-1]


def ways_for(name: str, path: str, mode: cgroups.CgroupMode) -> list[Way]:
    """The ways to try for one runtime on a host in ``mode``, best first."""
    ways = [Way("cgroupfs", (path,))]
    if name == "crun":
        unshare = which("unshare")
        if mode == "hybrid" and unshare and os.geteuid() == 0:
            ways.append(Way("hybrid-as-v1", (unshare, *HIDE_UNIFIED[1:], path)))
        ways.append(Way("no-cgroups", (path, "--cgroup-manager=disabled"), cgroups=False))
    return ways


def _make_probe_rootfs(rootfs: Path) -> None:
    """A root filesystem with one empty executable: create checks that the
    entry point exists, and the probe is never started."""
    rootfs.mkdir(parents=True, exist_ok=True)
    probe = rootfs / "probe"
    probe.write_bytes(b"")
    probe.chmod(0o755)


def enforced(dirs: dict[str, str]) -> tuple[bool, bool, bool]:
    """(cpu, memory, pids): whether the probe's limits show in the kernel."""
    quota = str(milli_cpu_to_quota(PROBE_CPU_MILLIS))
    cpu_dir, mem_dir, pids_dir = dirs.get("cpu"), dirs.get("memory"), dirs.get("pids")
    unified = dirs.get(cgroups.UNIFIED)
    cpu = bool(cpu_dir and cgroups.read_knob(cpu_dir, "cpu.cfs_quota_us") == quota)
    memory = bool(mem_dir and cgroups.read_knob(mem_dir, "memory.limit_in_bytes") == str(PROBE_MEMORY))
    pids = bool(pids_dir and cgroups.read_knob(pids_dir, "pids.max") == str(PROBE_PIDS))
    if unified:
        cpu = cpu or (cgroups.read_knob(unified, "cpu.max") or "").split(" ")[0] == quota
        memory = memory or cgroups.read_knob(unified, "memory.max") == str(PROBE_MEMORY)
        pids = pids or cgroups.read_knob(unified, "pids.max") == str(PROBE_PIDS)
    return cpu, memory, pids


async def probe(name: str, way: Way, workdir: Path, *, cgroup_parent: str) -> tuple[bool, bool, bool]:
    """Create (never start) one probe container the ``way`` says, read what
    the kernel enforces for it, delete it. Raises ContainerError if the
    runtime cannot create it."""
    probe_id = f"kubevisor-probe-{uuid.uuid4().hex[:12]}"
    bundle = workdir / probe_id
    rootfs = bundle / "rootfs"
    _make_probe_rootfs(rootfs)
    spec = ContainerSpec(
        id=probe_id, rootfs=str(rootfs), args=["/probe"], log_path="",
        resources=Resources(cpu_request_millis=PROBE_CPU_MILLIS, cpu_limit_millis=PROBE_CPU_MILLIS,
                            memory_limit_bytes=PROBE_MEMORY, pids_limit=PROBE_PIDS),
    )
    config = build_config(spec, cgroups_path=f"{cgroup_parent}/{probe_id}" if way.cgroups else None)
    (bundle / "config.json").write_text(json.dumps(config))
    command = RuntimeCommand(name, way.prefix, str(workdir / "root"))
    pid_file = bundle / "pid"
    try:
        await command.create(probe_id, bundle=str(bundle), pid_file=str(pid_file))
        pid = int(pid_file.read_text().strip())
        return enforced(cgroups.process_dirs(pid)) if way.cgroups else (False, False, False)
    finally:
        await command.delete(probe_id)
        shutil.rmtree(bundle, ignore_errors=True)


async def detect(workdir: str, *, cgroup_parent: str = "/kubevisor",
                 names: tuple[str, ...] = KNOWN_RUNTIMES) -> Detection:
    """Probe every runtime in ``names`` found on this host."""
    mode = cgroups.host_mode()
    detection = Detection(cgroup_mode=mode)
    conmon = which("conmon")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = which(name)
        if path is None:
            detection.problems[name] = "not installed"
            continue
        if conmon is None:
            detection.problems[name] = "conmon (the container monitor) is not installed"
            continue
        try:
            version = await runtime_version(path)
        except ContainerError as exc:
            detection.problems[name] = str(exc)
            continue
        failures = []
        for way in ways_for(name, path, mode):
            try:
                cpu, memory, pids = await probe(name, way, work / f"probe-{name}",
                                                cgroup_parent=cgroup_parent)
            except (ContainerError, OSError, ValueError) as exc:
                failures.append(f"{way.label}: {exc}")
                continue
            caps = RuntimeCapabilities(name=name, version=version, cgroup_mode=mode,
                                       cpu_limits=cpu, memory_limits=memory, pids_limits=pids)
            detection.profiles[name] = RuntimeProfile(caps, path, way, conmon)
            break
        else:
            detection.problems[name] = "; ".join(failures)
        shutil.rmtree(work / f"probe-{name}", ignore_errors=True)
    return detection


def choose(detection: Detection, prefer: str | None = None) -> RuntimeProfile:
    """The runtime to use: ``prefer`` if usable, else the one that enforces
    the most limits (runc first on a tie)."""
    if prefer is not None:
        profile = detection.profiles.get(prefer)
        if profile is None:
            why = detection.problems.get(prefer, "unknown runtime")
            raise ContainerError(f"OCI runtime {prefer} is not usable on this host: {why}")
        return profile
    if not detection.profiles:
        detail = "; ".join(f"{k}: {v}" for k, v in detection.problems.items())
        raise ContainerError(f"no usable OCI runtime on this host ({detail})")

    def score(profile: RuntimeProfile) -> tuple[int, int]:
        caps = profile.capabilities
        order = KNOWN_RUNTIMES.index(profile.name) if profile.name in KNOWN_RUNTIMES else 99
        return (-(caps.cpu_limits + caps.memory_limits + caps.pids_limits), order)

    return min(detection.profiles.values(), key=score)

