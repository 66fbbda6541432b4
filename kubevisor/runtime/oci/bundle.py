"""The OCI bundle: a pure function from a :class:`ContainerSpec` to the
runtime's ``config.json`` (OCI runtime-spec 1.0).

Called by :mod:`kubevisor.runtime.oci.runtime` when it creates a container,
and by :mod:`kubevisor.runtime.oci.detect` for its probe container. No I/O:
what the host can enforce is decided by the caller (``cgroups_path``), and
the result is a plain dict ready for ``json.dump``.

Defaults follow containerd's for Kubernetes pods: the same capability set,
masked and read-only paths, device rules and the /proc, /dev, /sys mounts.
The cgroup filesystem is not mounted inside the container.
"""

from __future__ import annotations

from typing import Any

from kubevisor.runtime.types import ContainerSpec, Mount, Resources

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: containerd's default capability set (what a Kubernetes pod gets).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Kubernetes' CPU conversions (pkg/kubelet/cm helpers).
MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
QUOTA_PERIOD_US = 100_000
MIN_QUOTA_US = 1000


def milli_cpu_to_shares(milli: int) -> int:
    """cpu.shares for a request of ``milli`` millicores (0 → the minimum, 2)."""
    if milli <= 0:
        return MIN_SHARES
    shares = milli * SHARES_PER_CPU // 1000
    return max(MIN_SHARES, min(MAX_SHARES, shares))


def milli_cpu_to_quota(milli: int, period_us: int = QUOTA_PERIOD_US) -> int:
    """CFS quota (µs per ``period_us``) for a limit of ``milli`` millicores."""
    return max(MIN_QUOTA_US, milli * period_us // 1000)


def _device_rule(kind: str, major: int | None, minor: int | None, access: str = "rwm") -> dict[str, Any]:
    rule: dict[str, Any] = {"allow": True, "type": kind, "access": access}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    return rule


#: Deny everything, then allow what containerd allows by default.
DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    _device_rule("c", None, None, "m"),
    _device_rule("b", None, None, "m"),
    _device_rule("c", 1, 3),  # /dev/null
    _device_rule("c", 1, 5),  # /dev/zero
    _device_rule("c", 1, 7),  # /dev/full
    _device_rule("c", 1, 8),  # /dev/random
    _device_rule("c", 1, 9),  # /dev/urandom
    _device_rule("c", 5, 0),  # /dev/tty
    _device_rule("c", 5, 1),  # /dev/console
    _device_rule("c", 5, 2),  # /dev/ptmx
    _device_rule("c", 136, None),  # /dev/pts/*
    _device_rule("c", 10, 200),  # /dev/net/tun
)


def base_mounts() -> list[dict[str, Any]]:
    """The kernel filesystems every container gets."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]


def spec_mount(mount: Mount) -> dict[str, Any]:
    """One mount of the spec as the runtime wants it."""
    ro = ["ro"] if mount.read_only else ["rw"]
    if mount.kind == "tmpfs":
        return {"destination": mount.destination, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", *ro]}
    return {"destination": mount.destination, "type": "bind", "source": mount.source,
            "options": ["rbind", "rprivate", *ro]}


def linux_resources(resources: Resources) -> dict[str, Any]:
    """The ``linux.resources`` section: devices always, cgroup knobs when set."""
    out: dict[str, Any] = {"devices": [dict(rule) for rule in DEVICE_RULES]}
    cpu: dict[str, Any] = {}
    if resources.cpu_request_millis is not None:
        cpu["shares"] = milli_cpu_to_shares(resources.cpu_request_millis)
    if resources.cpu_limit_millis is not None and resources.cpu_limit_millis > 0:
        cpu["quota"] = milli_cpu_to_quota(resources.cpu_limit_millis)
        cpu["period"] = QUOTA_PERIOD_US
    if cpu:
        out["cpu"] = cpu
    if resources.memory_limit_bytes is not None and resources.memory_limit_bytes > 0:
        # swap == limit: no swap beyond the limit (what kubelet does without swap).
        out["memory"] = {"limit": resources.memory_limit_bytes,
                         "swap": resources.memory_limit_bytes}
    if resources.pids_limit is not None and resources.pids_limit > 0:
        out["pids"] = {"limit": resources.pids_limit}
    return out


def process_env(spec: ContainerSpec) -> list[str]:
    env = dict(spec.env)
    env.setdefault("PATH", DEFAULT_PATH)
    if spec.tty:
        env.setdefault("TERM", "xterm")
    return [f"{key}={value}" for key, value in env.items()]


def build_config(spec: ContainerSpec, *, cgroups_path: str | None) -> dict[str, Any]:
    """The ``config.json`` for ``spec``; ``cgroups_path`` None leaves cgroups
    to the runtime's default (used when the host cannot enforce them)."""
    caps = list(DEFAULT_CAPABILITIES)
    namespaces: list[dict[str, str]] = [
        {"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
    ]
    namespaces.append({"type": "network", "path": spec.netns} if spec.netns else {"type": "network"})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": linux_resources(spec.resources),
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if cgroups_path is not None:
        linux["cgroupsPath"] = cgroups_path
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": spec.tty,
            "user": {"uid": spec.uid, "gid": spec.gid},
            "args": list(spec.args),
            "env": process_env(spec),
            "cwd": spec.cwd or "/",
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "noNewPrivileges": False,
        },
        "root": {"path": spec.rootfs, "readonly": False},
        "mounts": base_mounts() + [spec_mount(mount) for mount in spec.mounts],
        "linux": linux,
    }
    if spec.hostname:
        config["hostname"] = spec.hostname
    return config
