"""The OCI bundle builder: a ContainerSpec becomes the config.json runc and
crun expect (pure; no runtime needed)."""

from __future__ import annotations

import json

import pytest

from kubevisor.runtime.oci.bundle import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH,
    build_config,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
)
from kubevisor.runtime.types import ContainerSpec, Mount, Resources


def make(**kwargs: object) -> ContainerSpec:
    base: dict[str, object] = {"id": "c1", "rootfs": "/r", "args": ["/bin/app", "-x"], "log_path": "/l"}
    base.update(kwargs)
    return ContainerSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("milli", "shares"), [
    (0, 2), (1, 2), (10, 10), (100, 102), (250, 256), (1000, 1024), (1500, 1536),
    (10**9, 262144),
])
def test_shares_follow_kubernetes(milli: int, shares: int) -> None:
    assert milli_cpu_to_shares(milli) == shares


@pytest.mark.parametrize(("milli", "quota"), [(1, 1000), (100, 10_000), (500, 50_000), (2000, 200_000)])
def test_quota_follows_kubernetes(milli: int, quota: int) -> None:
    assert milli_cpu_to_quota(milli) == quota


def test_process_and_root() -> None:
    config = build_config(make(env={"A": "1"}, cwd="/work", uid=1000, gid=2000, tty=True),
                          cgroups_path="/kubevisor/c1")
    process = config["process"]
    assert process["args"] == ["/bin/app", "-x"]
    assert process["cwd"] == "/work"
    assert process["user"] == {"uid": 1000, "gid": 2000}
    assert process["terminal"] is True
    assert "A=1" in process["env"]
    assert f"PATH={DEFAULT_PATH}" in process["env"]
    assert "TERM=xterm" in process["env"]
    assert config["root"] == {"path": "/r", "readonly": False}
    assert config["linux"]["cgroupsPath"] == "/kubevisor/c1"
    json.dumps(config)  # serialisable as is


def test_own_path_is_kept_and_no_term_without_tty() -> None:
    env = build_config(make(env={"PATH": "/x"}), cgroups_path=None)["process"]["env"]
    assert env == ["PATH=/x"]


def test_capabilities_are_the_default_set() -> None:
    caps = build_config(make(), cgroups_path=None)["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        assert caps[kind] == list(DEFAULT_CAPABILITIES)
    assert "CAP_SYS_ADMIN" not in caps["bounding"]
    assert "CAP_NET_ADMIN" not in caps["bounding"]


def test_namespaces_new_network() -> None:
    namespaces = build_config(make(), cgroups_path=None)["linux"]["namespaces"]
    assert {ns["type"] for ns in namespaces} == {"pid", "mount", "ipc", "uts", "network"}
    assert all("path" not in ns for ns in namespaces)


def test_namespaces_join_pod_network() -> None:
    namespaces = build_config(make(netns="/run/netns/pod1"), cgroups_path=None)["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/pod1"} in namespaces


def test_hostname_only_when_given() -> None:
    assert "hostname" not in build_config(make(), cgroups_path=None)
    assert build_config(make(hostname="web-0"), cgroups_path=None)["hostname"] == "web-0"


def test_kernel_mounts_and_spec_mounts() -> None:
    mounts = build_config(make(mounts=[
        Mount("/data", "/host/data", read_only=True),
        Mount("/cache", kind="tmpfs"),
    ]), cgroups_path=None)["mounts"]
    by_dest = {m["destination"]: m for m in mounts}
    for dest, kind in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "tmpfs"),
                       ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/dev/mqueue", "mqueue")):
        assert by_dest[dest]["type"] == kind
    assert "ro" in by_dest["/sys"]["options"]
    data = by_dest["/data"]
    assert data["type"] == "bind" and data["source"] == "/host/data"
    assert "rbind" in data["options"] and "ro" in data["options"]
    assert by_dest["/cache"]["type"] == "tmpfs" and "rw" in by_dest["/cache"]["options"]
    # spec mounts come after the kernel ones (a bind over /dev/... must win)
    assert [m["destination"] for m in mounts][-2:] == ["/data", "/cache"]


def test_masked_and_readonly_paths() -> None:
    linux = build_config(make(), cgroups_path=None)["linux"]
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/proc/sys" in linux["readonlyPaths"]


def test_resources_from_requests_and_limits() -> None:
    res = build_config(make(resources=Resources(
        cpu_request_millis=250, cpu_limit_millis=500, memory_limit_bytes=64 << 20, pids_limit=100,
    )), cgroups_path="/p/c1")["linux"]["resources"]
    assert res["cpu"] == {"shares": 256, "quota": 50_000, "period": 100_000}
    assert res["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert res["pids"] == {"limit": 100}
    assert res["devices"][0] == {"allow": False, "access": "rwm"}


def test_unset_resources_leave_knobs_out() -> None:
    res = build_config(make(), cgroups_path=None)["linux"]["resources"]
    assert set(res) == {"devices"}
    only_request = build_config(make(resources=Resources(cpu_request_millis=100)),
                                cgroups_path=None)["linux"]["resources"]
    assert only_request["cpu"] == {"shares": 102}
