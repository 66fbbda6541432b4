"""The VM runner's pure parts: the power planner, the seed documents, the
node's part of the status, and the host names."""

from __future__ import annotations

from typing import Any

import yaml

from kubevisor.api.vmoperator import resolve
from kubevisor.node.vms import cloudinit, names
from kubevisor.node.vms.plan import Action, plan, restart_requested
from kubevisor.node.vms.status import CLASS_SYNCED, NicStatus, Observation, Problem, node_status


def vm(**spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    meta = spec.pop("metadata", {})
    return {"apiVersion": "vmoperator.vmware.com/v1alpha6", "kind": "VirtualMachine",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "generation": 3,
                         **meta},
            "spec": spec, "status": status}


def kinds(actions: list[Action]) -> list[str]:
    return [a.kind for a in actions]


def test_plan_defines_and_starts_a_new_vm() -> None:
    assert kinds(plan(vm(), None, desired="h1", defined="")) == ["define", "start"]
    assert kinds(plan(vm(), "shutdown", desired="h1", defined="h1")) == ["start"]
    assert plan(vm(), "running", desired="h1", defined="h1") == []
    # Nothing can be built: nothing is defined or started.
    assert plan(vm(), None, desired=None, defined="") == []
    assert plan(vm(), "shutdown", desired=None, defined="h1") == []


def test_plan_deletion_and_orphans() -> None:
    assert kinds(plan(None, "running", desired=None, defined="h")) == ["delete"]
    gone = vm(metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    assert kinds(plan(gone, "running", desired="h", defined="h")) == ["delete"]


def test_plan_power_states_and_modes() -> None:
    off = plan(vm(powerState="PoweredOff", powerOffMode="Soft"), "running", desired="h",
               defined="h")
    assert off == [Action("power_off", "soft")]
    assert plan(vm(powerState="PoweredOff"), "running", desired="h", defined="h") == \
        [Action("power_off", "trysoft")]
    assert kinds(plan(vm(powerState="PoweredOff"), "suspended", desired="h",
                      defined="h")) == ["discard"]
    assert plan(vm(powerState="PoweredOff"), "shutdown", desired="h", defined="h") == []
    assert kinds(plan(vm(powerState="Suspended"), "running", desired="h",
                      defined="h")) == ["suspend"]
    assert plan(vm(powerState="Suspended"), "shutdown", desired="h", defined="h") == []
    assert kinds(plan(vm(), "suspended", desired="h", defined="h")) == ["resume"]
    assert kinds(plan(vm(), "paused", desired="h", defined="h")) == ["resume"]


def test_plan_redefines_but_not_while_suspended() -> None:
    assert kinds(plan(vm(), "running", desired="new", defined="old")) == ["define"]
    assert kinds(plan(vm(), "suspended", desired="new", defined="old")) == ["resume"]
    assert kinds(plan(vm(), "shutdown", desired="new", defined="old")) == ["define", "start"]


def test_plan_restart_once_per_request() -> None:
    when = "2026-01-02T03:04:05.000000000Z"
    asked = vm(nextRestartTime=when, restartMode="Hard")
    assert plan(asked, "running", desired="h", defined="h") == [Action("reboot", "hard")]
    # Carried out (the record or the status says so): nothing more.
    assert plan(asked, "running", desired="h", defined="h", last_restart=when) == []
    done = vm(nextRestartTime=when, status={"lastRestartTime": when})
    assert plan(done, "running", desired="h", defined="h") == []
    # Not running: recorded as done, no restart later.
    assert kinds(plan(vm(nextRestartTime=when, powerState="PoweredOff"), "shutdown",
                      desired="h", defined="h")) == ["mark_restarted"]
    assert restart_requested(vm(nextRestartTime="now"), "") == ""


def test_names_are_stable_and_fit() -> None:
    assert names.mac("u-1", 0) == names.mac("u-1", 0) != names.mac("u-1", 1)
    assert names.mac("u-1", 0).startswith("52:54:00:") and len(names.mac("u-1", 0)) == 17
    assert names.tap("u-1", 0).startswith("kvt") and len(names.tap("u-1", 0)) == 15
    assert names.bios_uuid("u-1") == names.bios_uuid("u-1") != names.bios_uuid("u-2")
    assert names.bios_uuid("u-1") != names.instance_uuid("u-1")


def test_cloud_config_rendered_with_secrets_and_keys() -> None:
    v = vm(network={"hostName": "box"}, bootstrap={"cloudInit": {
        "cloudConfig": {
            "users": [{"name": "ops", "ssh_authorized_keys": ["ssh-ed25519 AAAA ops"],
                       "passwd": {"name": "pw", "key": "hash"}}],
            "runcmd": ["echo hi > /www/x", ["touch", "/tmp/y"]],
            "write_files": [{"path": "/etc/a", "content": "A\nB\n"},
                            {"path": "/etc/b", "content": {"name": "files", "key": "b"}}]},
        "sshAuthorizedKeys": ["ssh-ed25519 AAAA default"]}})
    assert cloudinit.secret_refs(v) == [("pw", "hash"), ("files", "b")]
    text = cloudinit.user_data(v, {("pw", "hash"): "$6$x", ("files", "b"): "secret-b"})
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["users"][0]["passwd"] == "$6$x"
    assert doc["runcmd"] == ["echo hi > /www/x", ["touch", "/tmp/y"]]
    assert doc["write_files"][1]["content"] == "secret-b"
    assert doc["ssh_authorized_keys"] == ["ssh-ed25519 AAAA default"]
    meta = yaml.safe_load(cloudinit.meta_data(v))
    assert meta == {"instance-id": "u-1", "local-hostname": "box"}


def test_missing_secret_key_is_a_bootstrap_error() -> None:
    v = vm(bootstrap={"cloudInit": {"rawCloudConfig": {"name": "ud", "key": "other"}}})
    assert cloudinit.secret_refs(v) == [("ud", "other")]
    try:
        cloudinit.user_data(v, {})
    except cloudinit.BootstrapError as exc:
        assert "'other'" in str(exc)
    else:
        raise AssertionError("no BootstrapError")


def test_raw_cloud_config_gets_the_ssh_keys_merged() -> None:
    v = vm(bootstrap={"cloudInit": {"rawCloudConfig": {"name": "ud"},
                                    "sshAuthorizedKeys": ["ssh-ed25519 AAAA k"]}})
    assert cloudinit.secret_refs(v) == [("ud", "user-data")]
    raw = "#cloud-config\nruncmd:\n- echo raw\n"
    doc = yaml.safe_load(cloudinit.user_data(v, {("ud", "user-data"): raw}))
    assert doc == {"runcmd": ["echo raw"], "ssh_authorized_keys": ["ssh-ed25519 AAAA k"]}
    script = "#!/bin/sh\necho hi\n"
    assert cloudinit.user_data(v, {("ud", "user-data"): script}) == script


def test_network_config_static_per_mac() -> None:
    text = cloudinit.network_config([
        cloudinit.Nic(mac="52:54:00:aa:bb:cc", name="eth0", address="10.9.0.5/24",
                      gateway="10.9.0.1"),
        cloudinit.Nic(mac="52:54:00:aa:bb:cd", name="eth1", address="10.9.0.6/24")],
        nameservers=["10.9.0.1"])
    doc = yaml.safe_load(text)
    assert doc["version"] == 2
    nic0, nic1 = doc["ethernets"]["nic0"], doc["ethernets"]["nic1"]
    assert nic0["match"] == {"macaddress": "52:54:00:aa:bb:cc"}
    assert nic0["addresses"] == ["10.9.0.5/24"]
    assert nic0["routes"] == [{"to": "default", "via": "10.9.0.1"}]
    assert "routes" not in nic1
    assert nic0["nameservers"] == {"addresses": ["10.9.0.1"]}


def _obs(**kw: Any) -> Observation:
    base: dict[str, Any] = {"power": "PoweredOn", "node": "n1", "bios_uuid": "b",
                            "instance_uuid": "i", "cpus": 2, "memory_bytes": 1 << 30,
                            "nics": [NicStatus("eth0", "52:54:00:00:00:01", "10.9.0.5/24")],
                            "hostname": "web", "ip_up": True}
    return Observation(**{**base, **kw})


def test_status_keeps_other_writers_fields() -> None:
    old = {"nodeName": "n1", "class": {"name": "small"}, "conditions": [
        {"type": resolve.CLASS_READY, "status": "True", "reason": "Ready", "message": "",
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    new = node_status(old, vm(), _obs())
    assert new["nodeName"] == "n1" and new["class"] == {"name": "small"}
    assert resolve.condition({"status": new}, resolve.CLASS_READY)["reason"] == "Ready"
    assert new["powerState"] == "PoweredOn" and new["uniqueID"] == "u-1"
    assert new["hardware"] == {"cpu": {"total": 2}, "memory": {"total": "1Gi"}}
    assert new["network"]["primaryIP4"] == "10.9.0.5"
    assert new["network"]["interfaces"][0]["ip"]["macAddr"] == "52:54:00:00:00:01"
    ready = resolve.condition({"status": new}, resolve.READY)
    assert ready["status"] == "True" and ready["observedGeneration"] == 3
    assert old["conditions"][0]["type"] == resolve.CLASS_READY and len(old["conditions"]) == 1


def test_status_is_stable_when_nothing_changed() -> None:
    first = node_status({}, vm(), _obs())
    again = node_status(first, vm(status=first), _obs())
    assert again == first


def test_status_conditions_explain() -> None:
    waiting = node_status({}, vm(), _obs(ip_up=False))
    assert "primaryIP4" not in waiting["network"]
    assert resolve.condition({"status": waiting}, resolve.READY)["reason"] == "WaitingForIP"
    failed = node_status({}, vm(), _obs(power=None, prepare=Problem(
        "VirtualMachineImageNotOnNode", "run kubevisor image add")))
    created = resolve.condition({"status": failed}, resolve.CREATED)
    assert (created["status"], created["reason"]) == ("False", "VirtualMachineImageNotOnNode")
    assert "powerState" not in failed
    cannot = node_status({}, vm(powerState="Suspended"), _obs(power="PoweredOff"))
    assert resolve.condition({"status": cannot}, resolve.POWER_SYNCED)["reason"] == \
        "CannotSuspendPoweredOffVM"
    pending = node_status({}, vm(), _obs(pending_restart="class 'big' applies"))
    synced = resolve.condition({"status": pending}, CLASS_SYNCED)
    assert (synced["status"], synced["reason"]) == ("False", "PendingRestart")
    probe = node_status({}, vm(), _obs(probe=False))
    assert resolve.condition({"status": probe}, resolve.READY)["reason"] == \
        "ReadinessProbeFailed"
