"""Reading the host's cgroup layout (pure parsers)."""

from __future__ import annotations

from kubevisor.runtime.oci import cgroups

HYBRID = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
"""

V2 = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
V1 = "31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"


def test_modes() -> None:
    assert cgroups.mode_of(cgroups.parse_mountinfo(HYBRID)) == "hybrid"
    assert cgroups.mode_of(cgroups.parse_mountinfo(V2)) == "v2"
    assert cgroups.mode_of(cgroups.parse_mountinfo(V1)) == "v1"
    assert cgroups.mode_of(cgroups.parse_mountinfo("")) == "none"


def test_mount_points() -> None:
    points = cgroups.parse_mountinfo(HYBRID)
    assert points["cpu"] == points["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert points["memory"] == "/sys/fs/cgroup/memory"
    assert points["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert points[cgroups.UNIFIED] == "/sys/fs/cgroup/unified"
    assert "xattr" not in points and "rw" not in points


def test_proc_cgroup() -> None:
    paths = cgroups.parse_proc_cgroup("4:memory:/k/c1\n1:cpu,cpuacct:/k/c1\n0::/k/c1\n")
    assert paths == {"memory": "/k/c1", "cpu": "/k/c1", "cpuacct": "/k/c1", cgroups.UNIFIED: "/k/c1"}


def test_host_mode_is_one_of_the_four() -> None:
    assert cgroups.host_mode() in ("v1", "hybrid", "v2", "none")
