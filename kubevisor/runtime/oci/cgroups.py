"""The host's cgroup filesystems, read from ``/proc``.

Used by :mod:`~kubevisor.runtime.oci.detect` (the host's cgroup mode, and
whether a probe container's limits really reached the kernel) and by
:mod:`~kubevisor.runtime.oci.runtime` (a container's cgroup directories, for
OOM detection and cleanup). Parsing is pure; the readers are thin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

CgroupMode = Literal["v1", "hybrid", "v2", "none"]
#: The key of the unified (v2) hierarchy in the maps below.
UNIFIED = ""


def parse_mountinfo(text: str) -> dict[str, str]:
    """Controller → mount point for every cgroup mount in a mountinfo text;
    v1 named hierarchies appear as ``name=systemd``, the v2 one as ``""``."""
    points: dict[str, str] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rest = right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        fstype, mount_point, superopts = rest[0], fields[4], rest[2]
        if fstype == "cgroup2":
            points.setdefault(UNIFIED, mount_point)
        elif fstype == "cgroup":
            for opt in superopts.split(","):
                if opt in ("rw", "ro") or opt.startswith("release_agent") or opt in (
                        "clone_children", "noprefix", "xattr", "nsdelegate"):
                    continue
                points.setdefault(opt, mount_point)
    return points


def mode_of(points: dict[str, str]) -> CgroupMode:
    """The host's cgroup mode from :func:`parse_mountinfo`'s map."""
    v1 = [key for key in points if key != UNIFIED]
    if UNIFIED in points and not v1:
        return "v2"
    if v1:
        return "hybrid" if UNIFIED in points else "v1"
    return "none"


def mount_points() -> dict[str, str]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def host_mode() -> CgroupMode:
    return mode_of(mount_points())


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller → cgroup path from a ``/proc/<pid>/cgroup`` text."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[UNIFIED] = path
            continue
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def process_dirs(pid: int, points: dict[str, str] | None = None) -> dict[str, str]:
    """Controller → host directory of the cgroups process ``pid`` is in
    (empty when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return {}
    points = mount_points() if points is None else points
    dirs: dict[str, str] = {}
    for controller, path in parse_proc_cgroup(text).items():
        mount = points.get(controller)
        if mount is not None:
            dirs[controller] = str(Path(mount) / path.lstrip("/"))
    return dirs


def read_knob(directory: str, name: str) -> str | None:
    try:
        return (Path(directory) / name).read_text().strip()
    except OSError:
        return None


def oom_kills(dirs: dict[str, str]) -> int:
    """How many processes the OOM killer ended in these cgroups (v1
    ``memory.oom_control``, v2 ``memory.events``); 0 when unknown."""
    for controller, name in (("memory", "memory.oom_control"), (UNIFIED, "memory.events")):
        directory = dirs.get(controller)
        text = read_knob(directory, name) if directory else None
        if not text:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return 0
