"""Pure tests of the Node object, its conditions and the Lease builders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kubevisor.node import lease, nodestatus
from kubevisor.node.clock import micro, parse, rfc3339
from kubevisor.node.config import NodeConfig
from kubevisor.node.hostinfo import HostFacts, architecture, parse_meminfo, parse_os_release

FACTS = HostFacts(
    hostname="h1", internal_ip="10.0.0.5", cpus=4, memory_bytes=8 * 1024**3,
    memory_available_bytes=4 * 1024**3, storage_bytes=100 * 1024**3,
    storage_available_bytes=50 * 1024**3, inodes_free_fraction=0.9, pids_max=4194304,
    pids_running=300, machine_id="abc", system_uuid="uuid-1", boot_id="boot-1",
    kernel_version="6.1.0", os_image="Debian GNU/Linux 12 (bookworm)", architecture="amd64")
CONFIG = NodeConfig(node_name="n1", data_dir=Path("/tmp/x"), pod_cidr="10.244.1.0/24")


def test_parsers() -> None:
    mem = parse_meminfo("MemTotal:       16318320 kB\nMemAvailable:    1000 kB\nHugePages_Total: 0\n")
    assert mem == {"MemTotal": 16318320 * 1024, "MemAvailable": 1024000, "HugePages_Total": 0}
    rel = parse_os_release('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
                           "# comment\nID=debian\n")
    assert rel["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)" and rel["ID"] == "debian"
    assert architecture("x86_64") == "amd64" and architecture("aarch64") == "arm64"


def test_capacity_and_allocatable() -> None:
    capacity, allocatable = nodestatus.resources(FACTS, CONFIG)
    assert capacity["cpu"] == "4" and capacity["pods"] == "110"
    assert capacity["memory"] == f"{8 * 1024 * 1024}Ki"
    assert allocatable["cpu"] == "3900m"
    assert allocatable["memory"] == f"{8 * 1024 * 1024 - 100 * 1024}Ki"
    assert int(allocatable["ephemeral-storage"]) == int(100 * 1024**3 * 0.9)
    _, alloc = nodestatus.resources(FACTS, replace(CONFIG, max_pods=20, reserved_cpu_millis=0))
    assert alloc["cpu"] == "4" and alloc["pods"] == "20"


def test_conditions_heartbeat_and_transition() -> None:
    first = nodestatus.conditions(None, FACTS, now=1000)
    by = {c["type"]: c for c in first}
    assert [c["type"] for c in first] == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert by["Ready"]["status"] == "True" and by["Ready"]["reason"] == "KubeletReady"
    assert by["Ready"]["message"] == "kubelet is posting ready status"
    assert by["MemoryPressure"]["reason"] == "KubeletHasSufficientMemory"
    assert by["DiskPressure"]["reason"] == "KubeletHasNoDiskPressure"
    assert by["PIDPressure"]["reason"] == "KubeletHasSufficientPID"
    # A later report: heartbeat moves, transition stays.
    second = {c["type"]: c for c in nodestatus.conditions(first, FACTS, now=2000)}
    assert second["Ready"]["lastHeartbeatTime"] == rfc3339(2000)
    assert second["Ready"]["lastTransitionTime"] == rfc3339(1000)
    # Memory runs low: MemoryPressure flips, its transition moves, others keep theirs.
    low = replace(FACTS, memory_available_bytes=50 * 1024 * 1024)
    third = {c["type"]: c for c in nodestatus.conditions(list(second.values()), low, now=3000)}
    assert third["MemoryPressure"]["status"] == "True"
    assert third["MemoryPressure"]["reason"] == "KubeletHasInsufficientMemory"
    assert third["MemoryPressure"]["lastTransitionTime"] == rfc3339(3000)
    assert third["DiskPressure"]["lastTransitionTime"] == rfc3339(1000)
    not_ready = {c["type"]: c for c in nodestatus.conditions(first, FACTS, now=4000,
                                                              not_ready="runtime down")}
    assert not_ready["Ready"]["status"] == "False"
    assert not_ready["Ready"]["reason"] == "KubeletNotReady"
    assert not_ready["Ready"]["message"] == "runtime down"


def test_disk_pressure() -> None:
    full = replace(FACTS, storage_available_bytes=5 * 1024**3)
    assert nodestatus.pressures(full)["DiskPressure"]
    assert nodestatus.pressures(replace(FACTS, inodes_free_fraction=0.01))["DiskPressure"]
    assert not nodestatus.pressures(FACTS)["DiskPressure"]


def test_node_object_and_differs() -> None:
    node = nodestatus.node_object(FACTS, replace(CONFIG, instance_type="m1"),
                                  runtime_version="runc://1.1.5", now=1000)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "n1"
    assert labels["kubernetes.io/os"] == "linux" and labels["kubernetes.io/arch"] == "amd64"
    assert labels["node.kubernetes.io/instance-type"] == "m1"
    assert node["spec"] == {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"] == "runc://1.1.5"
    assert info["kubeletVersion"] == "v1.32.0-kubevisor"
    assert info["osImage"] == "Debian GNU/Linux 12 (bookworm)"
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.5"},
                                           {"type": "Hostname", "address": "n1"}]
    status = node["status"]
    later = nodestatus.node_status(FACTS, CONFIG, runtime_version="runc://1.1.5",
                                   previous=status, now=1010)
    assert not nodestatus.status_differs(status, later)
    changed = nodestatus.node_status(replace(FACTS, cpus=8), CONFIG,
                                     runtime_version="runc://1.1.5", previous=status, now=1010)
    assert nodestatus.status_differs(status, changed)


def test_spec_patch_keeps_existing_cidr() -> None:
    existing = {"metadata": {"labels": {"kubernetes.io/hostname": "n1"}},
                "spec": {"podCIDR": "10.9.0.0/24"}}
    patch = nodestatus.spec_patch(existing, FACTS, CONFIG)
    assert patch is not None and "spec" not in patch
    assert patch["metadata"]["labels"]["kubernetes.io/os"] == "linux"


def test_lease_builders() -> None:
    body = lease.lease_object("n1", node_uid="u1", duration=40, now=1000.5)
    assert body["metadata"]["namespace"] == "kube-node-lease"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert body["spec"] == {"holderIdentity": "n1", "leaseDurationSeconds": 40,
                            "renewTime": micro(1000.5)}
    again = lease.renewed(body, "n1", node_uid="u1", duration=40, now=1010.25)
    assert again["spec"]["renewTime"] == "1970-01-01T00:16:50.250000Z"
    assert body["spec"]["renewTime"] == micro(1000.5)  # not mutated
    assert parse(micro(1010.25)) == 1010.25


def test_agent_annotations_are_set_at_creation_and_patched_in_when_they_change() -> None:
    config = replace(CONFIG, annotations={"vmoperator.kubevisor.io/accel": "tcg"})
    body = nodestatus.node_object(FACTS, config, runtime_version="runc://1.1", now=1000.0)
    assert body["metadata"]["annotations"]["vmoperator.kubevisor.io/accel"] == "tcg"
    assert body["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] == "0"
    assert nodestatus.spec_patch(body, FACTS, config) is None
    moved = replace(config, annotations={"vmoperator.kubevisor.io/accel": "kvm"})
    patch = nodestatus.spec_patch(body, FACTS, moved)
    assert patch == {"metadata": {"annotations": {"vmoperator.kubevisor.io/accel": "kvm"}}}
