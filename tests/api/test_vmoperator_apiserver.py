"""The VM Operator kinds served by the real apiserver and store: create, get,
list, patch and watch in every served version, conversion round trips
through the storage version (v1alpha6), defaults, strict field validation,
enum rejection, Table columns. In-process over ``httpx.ASGITransport``
(fixtures of tests/apiserver/conftest.py).
"""

from __future__ import annotations

import httpx
import orjson

from tests.apiserver import conftest as _apiserver
from tests.apiserver.conftest import make_ns

# The real app and an in-process client (fixtures of tests/apiserver).
app = _apiserver.app
api = _apiserver.api

G = "vmoperator.vmware.com"


def vms(version: str, ns: str = "ns1") -> str:
    return f"/apis/{G}/{version}/namespaces/{ns}/virtualmachines"


def v1alpha3_vm(name: str) -> dict:
    return {
        "apiVersion": f"{G}/v1alpha3",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "className": "best-effort-small",
            "imageName": "debian-12",
            "storageClass": "local",
            "powerOffMode": "Soft",
            "bootstrap": {"cloudInit": {
                "cloudConfig": {
                    "users": [{"name": "ops", "ssh_authorized_keys": ["ssh-ed25519 AAAA ops"],
                               "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash"}],
                    "runcmd": ["echo hello > /tmp/hello", ["touch", "/tmp/x"]],
                    "write_files": [{"path": "/etc/motd", "content": "hi\n"}],
                },
                "sshAuthorizedKeys": ["ssh-ed25519 AAAA default"],
            }},
            "network": {"hostName": "web-1",
                        "interfaces": [{"name": "eth0", "network": {"name": "primary"}}]},
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}}],
            "readinessProbe": {"tcpSocket": {"port": 22}},
            "advanced": {"bootDiskCapacity": "20Gi"},
            "cdrom": [{"name": "cd0", "image": {"kind": "VirtualMachineImage",
                                                "name": "tools-iso"}}],
        },
    }


async def test_v1alpha3_create_reads_as_every_version(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(vms("v1alpha3"), json=v1alpha3_vm("web"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["apiVersion"] == f"{G}/v1alpha3"
    spec = created["spec"]
    # defaults: the webhook's powerState, the schema's modes and write_files fields
    assert spec["powerState"] == "PoweredOn"
    assert spec["powerOffMode"] == "Soft"
    assert spec["suspendMode"] == spec["restartMode"] == "TrySoft"
    assert spec["bootstrap"]["cloudInit"]["cloudConfig"]["write_files"][0]["owner"] == "root:root"
    assert spec["cdrom"][0]["name"] == "cd0"

    v6 = (await api.get(vms("v1alpha6") + "/web")).json()
    assert v6["apiVersion"] == f"{G}/v1alpha6"
    assert "cdrom" not in v6["spec"]
    assert v6["spec"]["hardware"]["cdrom"][0]["image"]["name"] == "tools-iso"
    assert v6["spec"]["className"] == "best-effort-small"
    assert v6["spec"]["bootstrap"]["cloudInit"]["cloudConfig"]["runcmd"][1] == ["touch", "/tmp/x"]
    # the storage version's defaults apply too, as kube-apiserver applies them
    # to a custom resource read from etcd (v1alpha3 has no promoteDisksMode)
    assert v6["spec"]["promoteDisksMode"] == "Online"

    for version in ("v1alpha5", "v1alpha4", "v1alpha3"):
        got = (await api.get(vms(version) + "/web")).json()
        assert got["apiVersion"] == f"{G}/{version}"
        assert got["spec"]["imageName"] == "debian-12"
        assert ("cdrom" in got["spec"]) == (version in ("v1alpha3", "v1alpha4"))
        assert ("hardware" in got["spec"]) == (version == "v1alpha5")

    listed = (await api.get(vms("v1alpha6"))).json()
    assert listed["kind"] == "VirtualMachineList"
    assert [i["apiVersion"] for i in listed["items"]] == [f"{G}/v1alpha6"]


async def test_stored_in_v1alpha6(app: _apiserver.App, api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(vms("v1alpha3"), json=v1alpha3_vm("web"))
    assert r.status_code == 201, r.text
    kv = await app.ctx.store.get(f"/registry/{G}/virtualmachines/ns1/web")
    stored = orjson.loads(kv.value)
    assert stored["apiVersion"] == f"{G}/v1alpha6"
    assert stored["spec"]["hardware"]["cdrom"][0]["name"] == "cd0"


async def test_old_version_write_keeps_new_fields(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    body = v1alpha3_vm("web")
    body["apiVersion"] = f"{G}/v1alpha6"
    body["spec"]["hardware"] = {"cdrom": body["spec"].pop("cdrom")}
    body["spec"]["network"]["vlans"] = [{"name": "vlan10", "id": 10, "link": "eth0"}]
    body["spec"]["bootOptions"] = {"firmware": "efi"}
    r = await api.post(vms("v1alpha6"), json=body)
    assert r.status_code == 201, r.text
    # a v1alpha3 client changes the power state and the cdrom list
    r = await api.patch(vms("v1alpha3") + "/web",
                        content=orjson.dumps({"spec": {"powerState": "PoweredOff"}}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["powerState"] == "PoweredOff"
    assert "vlans" not in r.json()["spec"]["network"]
    v6 = (await api.get(vms("v1alpha6") + "/web")).json()
    assert v6["spec"]["powerState"] == "PoweredOff"
    assert v6["spec"]["network"]["vlans"][0]["id"] == 10
    assert v6["spec"]["bootOptions"]["firmware"] == "efi"
    assert v6["spec"]["hardware"]["cdrom"][0]["name"] == "cd0"


async def test_status_renames_round_trip(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(vms("v1alpha3"), json=v1alpha3_vm("web"))
    obj = (await api.get(vms("v1alpha6") + "/web")).json()
    obj["status"] = {"powerState": "PoweredOn", "nodeName": "node-1",
                     "network": {"primaryIP4": "10.0.0.5"},
                     "storage": {"total": "10Gi", "requested": {"disks": "8Gi"}},
                     "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                     "message": "", "lastTransitionTime":
                                     "2026-01-01T00:00:00Z"}]}
    r = await api.put(vms("v1alpha6") + "/web/status", json=obj)
    assert r.status_code == 200, r.text
    v3 = (await api.get(vms("v1alpha3") + "/web")).json()
    assert v3["status"]["host"] == "node-1" and "nodeName" not in v3["status"]
    assert v3["status"]["storage"] == {"usage": {"total": "10Gi", "disks": "8Gi"}}
    # a v1alpha3 spec update leaves the status as the hub has it
    v3["spec"]["className"] = "best-effort-large"
    r = await api.put(vms("v1alpha3") + "/web", json=v3)
    assert r.status_code == 200, r.text
    v6 = (await api.get(vms("v1alpha6") + "/web")).json()
    assert v6["spec"]["className"] == "best-effort-large"
    assert v6["status"]["nodeName"] == "node-1"
    assert v6["status"]["storage"] == {"total": "10Gi", "requested": {"disks": "8Gi"}}


async def test_invalid_power_state_and_unknown_fields(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    body = v1alpha3_vm("web")
    body["spec"]["powerState"] = "Off"
    r = await api.post(vms("v1alpha3"), json=body)
    assert r.status_code == 422
    causes = r.json()["details"]["causes"]
    assert causes[0]["field"] == "spec.powerState"
    assert 'supported values: "PoweredOff", "PoweredOn", "Suspended"' in causes[0]["message"]
    body = v1alpha3_vm("web")
    body["spec"]["bogus"] = 1
    body["spec"]["bootstrap"]["cloudInit"]["cloudConfig"]["users"][0]["nope"] = True
    r = await api.post(vms("v1alpha3") + "?fieldValidation=Strict", json=body)
    assert r.status_code == 400
    assert 'unknown field "spec.bogus"' in r.json()["message"]
    assert 'unknown field "spec.bootstrap.cloudInit.cloudConfig.users[0].nope"' in \
        r.json()["message"]
    # v1alpha6-only fields are unknown to v1alpha3
    body = v1alpha3_vm("web")
    body["spec"]["resources"] = {"size": {"cpu": 2}}
    r = await api.post(vms("v1alpha3") + "?fieldValidation=Strict", json=body)
    assert r.status_code == 400 and 'unknown field "spec.resources"' in r.json()["message"]


async def test_next_restart_time_now(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(vms("v1alpha3"), json=v1alpha3_vm("web"))
    r = await api.patch(vms("v1alpha6") + "/web",
                        content=b'{"spec":{"nextRestartTime":"now"}}',
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    when = r.json()["spec"]["nextRestartTime"]
    assert when.startswith("20") and when.endswith("Z") and len(when) == 30


async def test_table_columns_and_images(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(vms("v1alpha3"), json=v1alpha3_vm("web"))
    r = await api.get(vms("v1alpha6"), headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    table = r.json()
    cols = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert cols == [("Name", 0), ("Power-State", 0), ("Class", 1), ("Image", 1),
                    ("Primary-IP4", 1), ("Age", 0)]
    cells = table["rows"][0]["cells"]
    assert cells[:4] == ["web", None, "best-effort-small", "debian-12"] or \
        cells[:4] == ["web", "", "best-effort-small", "debian-12"]

    cvmi = {"apiVersion": f"{G}/v1alpha3", "kind": "ClusterVirtualMachineImage",
            "metadata": {"name": "debian-12"}, "spec": {}}
    r = await api.post(f"/apis/{G}/v1alpha3/clustervirtualmachineimages", json=cvmi)
    assert r.status_code == 201, r.text
    img = (await api.get(f"/apis/{G}/v1alpha6/clustervirtualmachineimages/debian-12")).json()
    img["status"] = {"name": "Debian 12", "type": "qcow2", "firmware": "efi",
                     "disks": [{"name": "disk0", "limit": "2Gi", "requested": "400Mi"}]}
    r = await api.put(f"/apis/{G}/v1alpha6/clustervirtualmachineimages/debian-12/status",
                      json=img)
    assert r.status_code == 200, r.text
    old = (await api.get(f"/apis/{G}/v1alpha3/clustervirtualmachineimages/debian-12")).json()
    assert old["status"]["disks"] == [{"capacity": "2Gi", "size": "400Mi"}]


async def test_discovery_names(api: httpx.AsyncClient) -> None:
    r = await api.get(f"/apis/{G}")
    group = r.json()
    assert group["preferredVersion"]["version"] == "v1alpha6"
    assert [v["version"] for v in group["versions"]] == ["v1alpha6", "v1alpha5", "v1alpha4",
                                                         "v1alpha3"]
    res = {x["name"]: x for x in (await api.get(f"/apis/{G}/v1alpha3")).json()["resources"]}
    assert res["virtualmachines"]["shortNames"] == ["vm"]
    assert res["clustervirtualmachineimages"]["namespaced"] is False
    assert "cvmi" in res["clustervirtualmachineimages"]["shortNames"]
    assert res["virtualmachineimages"]["shortNames"] == ["vmi", "vmimage"]
    assert "virtualmachines/status" in res
