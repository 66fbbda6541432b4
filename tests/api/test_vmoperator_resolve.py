"""The pure readings of VM Operator objects shared by the VM controller and
the node agent (``kubevisor.api.vmoperator.resolve``)."""

from __future__ import annotations

import copy

import pytest

from kubevisor.api.vmoperator import resolve
from kubevisor.api.vmoperator.resolve import Hardware, ImageRef


def vm(**spec: object) -> dict:
    return {"metadata": {"name": "vm1", "namespace": "ns"}, "spec": dict(spec)}


def vmclass(**spec: object) -> dict:
    return {"metadata": {"name": "small"}, "spec": dict(spec)}


def test_class_name_from_class_name_then_class_ref() -> None:
    assert resolve.class_name(vm(className="small")) == "small"
    assert resolve.class_name(vm(**{"class": {"apiVersion": "x/v1", "kind": "K",
                                              "name": "inst"}})) == "inst"
    assert resolve.class_name(vm(className="small", **{"class": {"name": "inst"}})) == "small"
    assert resolve.class_name(vm()) == ""
    assert resolve.class_name({}) == ""


def test_hardware_reads_cpus_and_memory_with_defaults() -> None:
    assert resolve.hardware(vmclass(hardware={"cpus": 2, "memory": "1Gi"})) == \
        Hardware(cpus=2, memory_bytes=2**30)
    assert resolve.hardware(vmclass(hardware={"memory": "256M"})) == \
        Hardware(cpus=1, memory_bytes=256_000_000)
    assert resolve.hardware(vmclass()) == Hardware(cpus=1, memory_bytes=512 * 2**20)
    assert resolve.hardware(None) == Hardware(cpus=1, memory_bytes=512 * 2**20)
    # Nonsense falls back to the defaults rather than failing.
    assert resolve.hardware(vmclass(hardware={"cpus": 0, "memory": "lots"})) == \
        Hardware(cpus=1, memory_bytes=512 * 2**20)


def test_requests_prefer_the_resource_policy() -> None:
    policy = {"resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                            "limits": {"cpu": "2"}}}
    assert resolve.requests(vmclass(hardware={"cpus": 4, "memory": "4Gi"}, policies=policy)) == \
        {"cpu": "500m", "memory": "256Mi"}
    assert resolve.requests(vmclass(hardware={"cpus": 4, "memory": "4Gi"})) == \
        {"cpu": "4", "memory": str(4 * 2**30)}
    only_cpu = {"resources": {"requests": {"cpu": "1"}}}
    assert resolve.requests(vmclass(policies=only_cpu)) == {"cpu": "1"}
    assert resolve.requests(vmclass(policies={"resources": {"requests": {}}})) == \
        {"cpu": "1", "memory": str(512 * 2**20)}


def test_image_ref_from_image_then_image_name() -> None:
    assert resolve.image_ref(vm(imageName="deb")) == ImageRef("VirtualMachineImage", "deb")
    assert resolve.image_ref(vm(image={"kind": "ClusterVirtualMachineImage", "name": "c"})) == \
        ImageRef("ClusterVirtualMachineImage", "c")
    assert resolve.image_ref(vm(image={"kind": "VirtualMachineImage", "name": "v"},
                                imageName="other")) == ImageRef("VirtualMachineImage", "v")
    assert resolve.image_ref(vm()) is None
    assert resolve.image_ref(vm(image={"kind": "VirtualMachineImage", "name": ""})) is None


def test_image_digest_and_format() -> None:
    image = {"metadata": {"name": "deb", "annotations": {
        "vmoperator.kubevisor.io/image-digest": "sha256:ab"}}, "status": {"type": "QCOW2"}}
    assert resolve.image_digest(image) == "sha256:ab"
    assert resolve.image_format(image) == "qcow2"
    assert resolve.image_digest({"metadata": {}}) == ""
    assert resolve.image_format({}) == ""


def test_set_condition_adds_changes_and_keeps_the_transition_time() -> None:
    status: dict = {}
    assert resolve.set_condition(status, resolve.CLASS_READY, "False", "NotFound",
                                 "no class", generation=1, now="t1")
    assert status["conditions"] == [{
        "type": "VirtualMachineClassReady", "status": "False", "reason": "NotFound",
        "message": "no class", "lastTransitionTime": "t1", "observedGeneration": 1}]
    before = copy.deepcopy(status)
    assert not resolve.set_condition(status, resolve.CLASS_READY, "False", "NotFound",
                                     "no class", generation=1, now="t2")
    assert status == before
    # A new message alone is a change that keeps the transition time.
    assert resolve.set_condition(status, resolve.CLASS_READY, "False", "NotFound",
                                 "still no class", generation=2, now="t3")
    cond = resolve.condition({"status": status}, resolve.CLASS_READY)
    assert cond is not None
    assert (cond["message"], cond["lastTransitionTime"], cond["observedGeneration"]) == \
        ("still no class", "t1", 2)
    # A status flip moves it.
    assert resolve.set_condition(status, resolve.CLASS_READY, "True", "Ready", "",
                                 generation=2, now="t4")
    cond = resolve.condition({"status": status}, resolve.CLASS_READY)
    assert cond is not None and cond["lastTransitionTime"] == "t4"
    # Others are left alone.
    assert resolve.set_condition(status, resolve.IMAGE_READY, "True", "Ready", "",
                                 generation=None, now="t5")
    assert [c["type"] for c in status["conditions"]] == [resolve.CLASS_READY,
                                                        resolve.IMAGE_READY]
    assert "observedGeneration" not in status["conditions"][1]


def test_set_condition_does_not_mutate_the_conditions_it_was_given() -> None:
    shared = [{"type": "Ready", "status": "False", "reason": "X", "message": "",
               "lastTransitionTime": "t0"}]
    status = {"conditions": shared}
    assert resolve.set_condition(status, "Ready", "True", "Y", "", generation=1, now="t1")
    assert shared[0]["status"] == "False"


def test_condition_is_none_when_absent() -> None:
    assert resolve.condition({}, resolve.READY) is None
    assert resolve.condition({"status": {"conditions": None}}, resolve.READY) is None


@pytest.mark.parametrize("name", ["CLASS_READY", "IMAGE_READY", "STORAGE_READY",
                                  "BOOTSTRAP_READY", "CREATED", "POWER_SYNCED", "READY"])
def test_condition_type_names_match_the_contract(name: str) -> None:
    expected = {"CLASS_READY": "VirtualMachineClassReady",
                "IMAGE_READY": "VirtualMachineImageReady",
                "STORAGE_READY": "VirtualMachineStorageReady",
                "BOOTSTRAP_READY": "VirtualMachineBootstrapReady",
                "CREATED": "VirtualMachineCreated",
                "POWER_SYNCED": "VirtualMachinePowerStateSynced", "READY": "Ready"}
    assert getattr(resolve, name) == expected[name]
    assert resolve.FINALIZER == "vmoperator.kubevisor.io/host-cleanup"
