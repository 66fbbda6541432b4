"""The VM Operator API through the real kubectl against ``kubevisor up``:
manifests written the way public VM Operator docs and tutorials write them
(a v1alpha3 VM with an inline cloudConfig and a Secret-backed
rawCloudConfig, a v1alpha6 one) apply unchanged with strict validation;
``get -o wide`` shows Power-State, Class, Image, Primary-IP4; ``explain``
walks the schema; an invalid powerState is refused; a merge patch powers a
VM off. No controller acts on the objects yet.
"""

from __future__ import annotations

import pytest

from tests.e2e.output import AGE, header, table
from tests.support.server import KubevisorServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-kubectl-vmoperator")]

CLASS_AND_IMAGE = """\
apiVersion: vmoperator.vmware.com/v1alpha3
kind: VirtualMachineClass
metadata:
  name: best-effort-small
  namespace: {ns}
spec:
  hardware:
    cpus: 2
    memory: 4Gi
  policies:
    resources:
      requests:
        cpu: 500m
        memory: 1Gi
---
apiVersion: vmoperator.vmware.com/v1alpha3
kind: ClusterVirtualMachineImage
metadata:
  name: {image}
spec: {{}}
---
apiVersion: vmoperator.vmware.com/v1alpha6
kind: VirtualMachineImage
metadata:
  name: tools-iso
  namespace: {ns}
spec: {{}}
"""

# A tutorial-style v1alpha3 VM: inline cloud-config plus a Secret with raw user-data.
V1ALPHA3_VM = """\
apiVersion: v1
kind: Secret
metadata:
  name: web-1-user-data
  namespace: {ns}
stringData:
  user-data: |
    #cloud-config
    runcmd:
      - echo raw > /tmp/raw
---
apiVersion: vmoperator.vmware.com/v1alpha3
kind: VirtualMachine
metadata:
  name: web-1
  namespace: {ns}
  labels:
    app: web
spec:
  className: best-effort-small
  imageName: {image}
  storageClass: local
  powerState: PoweredOn
  powerOffMode: Soft
  bootstrap:
    cloudInit:
      cloudConfig:
        users:
          - name: ops
            primary_group: ops
            groups: [users, admin]
            shell: /bin/bash
            sudo: ALL=(ALL) NOPASSWD:ALL
            lock_passwd: true
            ssh_authorized_keys:
              - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0Zm9yZWtleQ ops@example
        runcmd:
          - echo hello > /tmp/hello
          - [touch, /tmp/from-list]
        write_files:
          - path: /etc/motd
            content: welcome to web-1
            permissions: "0644"
      sshAuthorizedKeys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0Zm9yZWtleQ default@example
  network:
    hostName: web-1
    interfaces:
      - name: eth0
        network:
          name: primary
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: web-1-data
  readinessProbe:
    tcpSocket:
      port: 22
  advanced:
    bootDiskCapacity: 10Gi
---
apiVersion: vmoperator.vmware.com/v1alpha3
kind: VirtualMachine
metadata:
  name: web-2
  namespace: {ns}
spec:
  className: best-effort-small
  imageName: {image}
  storageClass: local
  bootstrap:
    cloudInit:
      rawCloudConfig:
        name: web-1-user-data
        key: user-data
"""

V1ALPHA6_VM = """\
apiVersion: vmoperator.vmware.com/v1alpha6
kind: VirtualMachine
metadata:
  name: db-1
  namespace: {ns}
spec:
  className: best-effort-small
  image:
    kind: ClusterVirtualMachineImage
    name: {image}
  storageClass: local
  powerState: PoweredOff
  restartMode: Hard
  bootstrap:
    cloudInit:
      cloudConfig:
        runcmd: ["echo db > /tmp/db"]
  hardware:
    cdrom:
      - name: cd0
        image:
          kind: VirtualMachineImage
          name: tools-iso
  network:
    interfaces:
      - name: eth0
        type: VMXNet3
  resources:
    size:
      cpu: 2
      memory: 2Gi
"""


def _apply(server: KubevisorServer, manifest: str) -> str:
    return server.apply_yaml(manifest, "--validate=strict")


def test_tutorial_manifests_apply_and_print(server: KubevisorServer, ns: str) -> None:
    image = f"debian-12-{ns}"
    out = _apply(server, CLASS_AND_IMAGE.format(ns=ns, image=image))
    assert "virtualmachineclass.vmoperator.vmware.com/best-effort-small created" in out
    assert f"clustervirtualmachineimage.vmoperator.vmware.com/{image} created" in out
    out = _apply(server, V1ALPHA3_VM.format(ns=ns, image=image))
    assert "virtualmachine.vmoperator.vmware.com/web-1 created" in out
    out = _apply(server, V1ALPHA6_VM.format(ns=ns, image=image))
    assert "virtualmachine.vmoperator.vmware.com/db-1 created" in out
    # applying the same manifests again changes no spec (kubectl sends web-1's
    # defaulted write_files list again, as against kube-apiserver)
    before = server.kubectl_json("get", "vm", "web-1", "-n", ns)["spec"]
    again = _apply(server, V1ALPHA3_VM.format(ns=ns, image=image))
    assert "virtualmachine.vmoperator.vmware.com/web-2 unchanged" in again
    assert server.kubectl_json("get", "vm", "web-1", "-n", ns)["spec"] == before

    wide = server.kubectl("get", "vm", "-n", ns, "-o", "wide").stdout
    assert header(wide) == ["NAME", "POWER-STATE", "CLASS", "IMAGE", "PRIMARY-IP4", "AGE"]
    rows = {r["NAME"]: r for r in table(wide)}
    assert rows["web-1"]["CLASS"] == "best-effort-small"
    assert rows["web-1"]["IMAGE"] == image and rows["db-1"]["IMAGE"] == image
    assert AGE.match(rows["db-1"]["AGE"])
    assert header(server.kubectl("get", "vm", "-n", ns).stdout) == ["NAME", "POWER-STATE",
                                                                   "AGE"]

    # the v1alpha3 object reads right as v1alpha6 (the preferred version) and back
    vm = server.kubectl_json("get", "vm", "web-1", "-n", ns)
    assert vm["apiVersion"] == "vmoperator.vmware.com/v1alpha6"
    assert vm["spec"]["powerState"] == "PoweredOn"
    assert vm["spec"]["suspendMode"] == "TrySoft" and vm["spec"]["powerOffMode"] == "Soft"
    cloud = vm["spec"]["bootstrap"]["cloudInit"]["cloudConfig"]
    assert cloud["runcmd"] == ["echo hello > /tmp/hello", ["touch", "/tmp/from-list"]]
    assert cloud["write_files"][0]["owner"] == "root:root"
    db = server.kubectl_json("get", "virtualmachines.v1alpha3.vmoperator.vmware.com", "db-1",
                             "-n", ns)
    assert db["apiVersion"] == "vmoperator.vmware.com/v1alpha3"
    assert db["spec"]["cdrom"][0]["image"]["name"] == "tools-iso"
    assert "resources" not in db["spec"] and "hardware" not in db["spec"]

    listed = server.kubectl("get", "vmclass,vmi,cvmi", "-n", ns, "-o", "name").stdout.split()
    assert "virtualmachineclass.vmoperator.vmware.com/best-effort-small" in listed
    assert "virtualmachineimage.vmoperator.vmware.com/tools-iso" in listed
    assert f"clustervirtualmachineimage.vmoperator.vmware.com/{image}" in listed
    classes = server.kubectl("get", "vmclass", "-n", ns).stdout
    assert header(classes) == ["NAME", "CPU", "MEMORY"]
    assert table(classes)[0] == {"NAME": "best-effort-small", "CPU": "2", "MEMORY": "4Gi"}

    # power off with a merge patch, as users (and issue 4's tests) do
    out = server.kubectl("patch", "vm", "web-1", "-n", ns, "--type", "merge", "-p",
                         '{"spec":{"powerState":"PoweredOff"}}').stdout
    assert "virtualmachine.vmoperator.vmware.com/web-1 patched" in out
    state = server.kubectl("get", "vm", "web-1", "-n", ns, "-o",
                           "jsonpath={.spec.powerState}").stdout
    assert state == "PoweredOff"


def test_invalid_and_unknown_fields_refused(server: KubevisorServer, ns: str) -> None:
    bad = V1ALPHA6_VM.format(ns=ns, image="x").replace("powerState: PoweredOff",
                                                       "powerState: Stopped")
    result = server.kubectl("apply", "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert 'is invalid: spec.powerState: Unsupported value: "Stopped": supported values: ' \
        '"PoweredOff", "PoweredOn", "Suspended"' in result.stderr
    unknown = V1ALPHA6_VM.format(ns=ns, image="x").replace("  restartMode: Hard",
                                                           "  restartMode: Hard\n  bogus: 1")
    result = server.kubectl("apply", "--validate=strict", "-f", "-", input=unknown, check=False)
    assert result.returncode != 0 and 'unknown field "spec.bogus"' in result.stderr
    modes = V1ALPHA6_VM.format(ns=ns, image="x").replace("restartMode: Hard",
                                                         "restartMode: Gentle")
    result = server.kubectl("apply", "-f", "-", input=modes, check=False)
    assert 'spec.restartMode: Unsupported value: "Gentle"' in result.stderr


def test_explain(server: KubevisorServer) -> None:
    out = server.kubectl("explain", "virtualmachine.spec.bootstrap").stdout
    assert "GROUP:      vmoperator.vmware.com" in out
    assert "VERSION:    v1alpha6" in out
    for field in ("cloudInit", "linuxPrep", "sysprep", "vAppConfig"):
        assert field in out
    out = server.kubectl("explain", "vm.spec.bootstrap.cloudInit.cloudConfig.users").stdout
    assert "ssh_authorized_keys" in out and "sudo" in out
    out = server.kubectl("explain", "vm.spec.powerState").stdout
    assert "PoweredOn" in out
    out = server.kubectl("explain", "vm.spec",
                         "--api-version=vmoperator.vmware.com/v1alpha3").stdout
    assert "cdrom" in out and "className" in out and "cpuAdvanced" not in out
