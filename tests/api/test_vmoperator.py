"""The VM Operator kinds as data: schemas per version (fields, enums,
defaults, list-map keys), the VM's defaults, columns and the conversion
between versions, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubevisor.api import validation
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.kinds import ResourceType
from kubevisor.api.printers import table_cells, table_columns
from kubevisor.api.vmoperator import defaults, vm
from kubevisor.api.vmoperator.conversion import prune
from kubevisor.api.vmoperator.fields import at, without

G = "vmoperator.vmware.com"
REGISTRY = builtin_registry()


def rt(kind: str, version: str = "v1alpha6") -> ResourceType:
    found = REGISTRY.by_kind(G, version, kind)
    assert found is not None
    return found


def vm_obj(version: str, **spec: object) -> dict:
    return {"apiVersion": f"{G}/{version}", "kind": "VirtualMachine",
            "metadata": {"name": "vm1", "namespace": "ns"}, "spec": dict(spec)}


def test_every_kind_in_four_versions_v1alpha6_stored() -> None:
    kinds = {r.kind for r in REGISTRY if r.group == G}
    assert kinds == {"VirtualMachine", "VirtualMachineClass", "VirtualMachineImage",
                     "ClusterVirtualMachineImage", "VirtualMachineService",
                     "VirtualMachineWebConsoleRequest", "VirtualMachinePublishRequest",
                     "VirtualMachineSetResourcePolicy"}
    for kind in kinds:
        versions = {r.version: r for r in REGISTRY if r.group == G and r.kind == kind}
        assert set(versions) == {"v1alpha3", "v1alpha4", "v1alpha5", "v1alpha6"}
        assert [v for v, r in versions.items() if r.storage] == ["v1alpha6"]
        assert all(r.has_status and r.custom and r.converter is not None
                   for r in versions.values())
    assert rt("VirtualMachine").short_names == ("vm",)
    assert rt("ClusterVirtualMachineImage").namespaced is False


@pytest.mark.parametrize("version", vm.VERSIONS)
def test_vm_schema_enums_and_shared_fields(version: str) -> None:
    schema = vm.schema(version)
    assert at(schema, "spec.powerState")["enum"] == ["PoweredOff", "PoweredOn", "Suspended"]
    for mode in ("powerOffMode", "suspendMode", "restartMode"):
        assert at(schema, f"spec.{mode}") | {"description": ""} == {
            "type": "string", "enum": ["Hard", "Soft", "TrySoft"], "default": "TrySoft",
            "description": ""}
    for path in ("spec.className", "spec.imageName", "spec.storageClass",
                 "spec.nextRestartTime", "spec.bootstrap.cloudInit.rawCloudConfig.key",
                 "spec.bootstrap.cloudInit.sshAuthorizedKeys",
                 "spec.advanced.bootDiskCapacity", "spec.readinessProbe.tcpSocket.port",
                 "status.network.primaryIP4", "status.uniqueID", "status.biosUUID",
                 "status.instanceUUID", "status.conditions", "status.volumes"):
        at(schema, path)
    users = at(schema, "spec.bootstrap.cloudInit.cloudConfig.users")
    assert users["x-kubernetes-list-map-keys"] == ["name"]
    assert "ssh_authorized_keys" in users["items"]["properties"]
    # the version-specific names
    assert ("cdrom" in schema["properties"]["spec"]["properties"]) == \
        (version in ("v1alpha3", "v1alpha4"))
    node = "host" if version == "v1alpha3" else "nodeName"
    assert node in schema["properties"]["status"]["properties"]


def test_vm_schema_validates_like_upstream() -> None:
    r = rt("VirtualMachine", "v1alpha3")
    ok = vm_obj("v1alpha3", className="c", powerState="Suspended",
                volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "pvc"}}],
                readinessProbe={"tcpSocket": {"port": "ssh"}},
                advanced={"bootDiskCapacity": "10Gi"})
    assert validation.validate(r, ok) == []
    bad = vm_obj("v1alpha3", powerState="On", restartMode="Gentle",
                 volumes=[{"persistentVolumeClaim": {}}])
    fields = {e.field: e.type for e in validation.validate(r, bad)}
    assert fields == {"spec.powerState": "FieldValueNotSupported",
                      "spec.restartMode": "FieldValueNotSupported",
                      "spec.volumes[0].name": "FieldValueRequired",
                      "spec.volumes[0].persistentVolumeClaim.claimName": "FieldValueRequired"}
    assert validation.unknown_fields_of(r, vm_obj("v1alpha3", cpuAdvanced={})) == \
        ["spec.cpuAdvanced"]
    assert validation.unknown_fields_of(rt("VirtualMachine"), vm_obj(
        "v1alpha6", cpuAdvanced={}, bootstrap={"cloudInit": {"cloudConfig": {
            "runcmd": [["a", "b"], "c"], "write_files": [{"path": "/x", "content": {"y": 1}}]}}},
    )) == []


def test_vm_defaults() -> None:
    r = rt("VirtualMachine")
    obj = vm_obj("v1alpha6", bootstrap={"cloudInit": {"cloudConfig": {
        "write_files": [{"path": "/etc/motd", "content": "x"}]}}})
    assert r.defaulter is not None
    r.defaulter(obj)
    spec = obj["spec"]
    assert spec["powerState"] == "PoweredOn"
    assert (spec["powerOffMode"], spec["suspendMode"], spec["restartMode"]) == ("TrySoft",) * 3
    assert spec["promoteDisksMode"] == "Online"
    assert spec["bootstrap"]["cloudInit"]["cloudConfig"]["write_files"][0] == {
        "path": "/etc/motd", "content": "x", "encoding": "text/plain", "owner": "root:root",
        "permissions": "0644"}
    off = vm_obj("v1alpha6", powerState="PoweredOff")
    r.defaulter(off)
    assert off["spec"]["powerState"] == "PoweredOff"
    # v1alpha3 has no promoteDisksMode, so no default for it
    old = vm_obj("v1alpha3")
    rt("VirtualMachine", "v1alpha3").defaulter(old)  # type: ignore[misc]
    assert "promoteDisksMode" not in old["spec"]


def test_next_restart_time_now_becomes_the_time() -> None:
    obj = vm_obj("v1alpha6", nextRestartTime="NOW")
    defaults.virtual_machine(obj, clock=lambda: datetime(2026, 1, 2, 3, 4, 5, 600000, UTC))
    assert obj["spec"]["nextRestartTime"] == "2026-01-02T03:04:05.600000000Z"
    obj = vm_obj("v1alpha6", nextRestartTime="2026-01-02T03:04:05Z")
    defaults.virtual_machine(obj)
    assert obj["spec"]["nextRestartTime"] == "2026-01-02T03:04:05Z"


def test_vm_columns() -> None:
    r = rt("VirtualMachine")
    assert [(c["name"], c["priority"]) for c in table_columns(r)] == [
        ("Name", 0), ("Power-State", 0), ("Class", 1), ("Image", 1), ("Primary-IP4", 1),
        ("Age", 0)]
    obj = vm_obj("v1alpha6", className="small", image={"kind": "ClusterVirtualMachineImage",
                                                       "name": "deb"})
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    obj["status"] = {"powerState": "PoweredOn", "network": {"primaryIP4": "10.0.0.2"}}
    now = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert table_cells(r, obj, now) == ["vm1", "PoweredOn", "small", "deb", "10.0.0.2", "5m"]
    obj["spec"] = {"imageName": "by-name"}
    assert table_cells(r, obj, now)[3] == "by-name"


def test_conversion_moves_and_prunes() -> None:
    conv = rt("VirtualMachine").converter
    assert conv is not None and conv.storage_version == "v1alpha6"
    v3 = vm_obj("v1alpha3", cdrom=[{"name": "cd0", "image": {"kind": "VirtualMachineImage",
                                                             "name": "iso"}}])
    v3["status"] = {"host": "n1", "storage": {"usage": {"total": "5Gi", "other": "1Gi"}}}
    defaulter = rt("VirtualMachine", "v1alpha3").defaulter
    assert defaulter is not None
    defaulter(v3)  # as the apiserver does at the request's version
    hub = conv.convert(v3, "v1alpha6")
    assert v3["spec"]["cdrom"]  # the input is left alone
    assert hub["apiVersion"] == f"{G}/v1alpha6"
    assert hub["spec"]["hardware"] == {"cdrom": v3["spec"]["cdrom"]}
    # the storage version's own defaults are applied on the way up, as
    # kube-apiserver applies them to a custom resource read from etcd
    assert "promoteDisksMode" not in v3["spec"] and hub["spec"]["promoteDisksMode"] == "Online"
    assert hub["status"] == {"nodeName": "n1", "storage": {"total": "5Gi",
                                                          "usage": {"other": "1Gi"}}}
    assert conv.convert(hub, "v1alpha3") == v3
    v5 = conv.convert(hub, "v1alpha5")
    assert v5["spec"] == hub["spec"] and v5["apiVersion"] == f"{G}/v1alpha5"
    # down-conversion drops what the target cannot say; previous keeps it on the way up
    hub["spec"]["resources"] = {"size": {"cpu": 2}}
    hub["spec"]["hardware"]["scsiControllers"] = [{"busNumber": 0}]
    hub["spec"]["hardware"]["cdrom"][0]["unitNumber"] = 1
    down = conv.convert(hub, "v1alpha3")
    assert "resources" not in down["spec"] and "unitNumber" not in down["spec"]["cdrom"][0]
    down["spec"]["className"] = "big"
    up = conv.convert(down, "v1alpha6", previous=hub)
    assert up["spec"]["className"] == "big"
    assert up["spec"]["resources"] == {"size": {"cpu": 2}}
    assert up["spec"]["hardware"]["scsiControllers"] == [
        {"busNumber": 0, "sharingMode": "None", "type": "ParaVirtual"}]  # kept, and defaulted
    assert up["spec"]["hardware"]["cdrom"][0]["unitNumber"] == 1


def test_image_disk_names_convert() -> None:
    conv = rt("VirtualMachineImage").converter
    assert conv is not None
    img = {"apiVersion": f"{G}/v1alpha6", "kind": "VirtualMachineImage",
           "metadata": {"name": "i"}, "status": {"disks": [
               {"name": "d0", "limit": "2Gi", "requested": "1Gi", "unitNumber": 0}]}}
    v4 = conv.convert(img, "v1alpha4")
    assert v4["status"]["disks"] == [{"capacity": "2Gi", "size": "1Gi"}]
    assert conv.convert(v4, "v1alpha6")["status"]["disks"] == [{"limit": "2Gi",
                                                                 "requested": "1Gi"}]


def test_prune_and_without() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "string"}, "free": {"x-kubernetes-preserve-unknown-fields": True},
        "m": {"type": "object", "additionalProperties": {"type": "string"}}}}
    assert prune({"a": "x", "b": 1, "free": {"z": 1}, "m": {"k": "v"}}, schema) == {
        "a": "x", "free": {"z": 1}, "m": {"k": "v"}}
    smaller = without(schema, "a")
    assert set(smaller["properties"]) == {"free", "m"} and "a" in schema["properties"]
    with pytest.raises(KeyError):
        without(schema, "nope")
