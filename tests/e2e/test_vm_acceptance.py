"""Issue 4's acceptance, the way a user does it: ``kubevisor up`` with its
node agent, ``kubevisor image add`` of the test guest's disk image, the
real kubectl applying a VirtualMachineClass, a VirtualMachine with a
cloud-config (runcmd writing a file, an ssh key) and a LoadBalancer
VirtualMachineService, then power operations through ``kubectl patch``
and ``kubectl wait``, the agent SIGKILLed and restarted, and the delete.

The guest is kubevisor's small test guest under TCG (about 8 s a boot):
it serves its hostname and whatever runcmd writes under ``/www`` on port
80, which is how the test reads the file cloud-init wrote.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.nodeserver import (
    NodeServer,
    free_lb_pool,
    running_node_server,
    wait_until,
)
from tests.support.server import kubevisor_command, unique

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-vm-acceptance")]

BOOT = 120.0  # seconds for a TCG boot to an address, with room for a loaded host
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHl0Zm9yZWtleQ admin@example"

MANIFEST = """\
apiVersion: vmoperator.vmware.com/v1alpha6
kind: VirtualMachineClass
metadata:
  name: small
  namespace: {ns}
spec:
  hardware:
    cpus: 1
    memory: 256Mi
---
apiVersion: vmoperator.vmware.com/v1alpha6
kind: VirtualMachine
metadata:
  name: web
  namespace: {ns}
  labels:
    app: web
spec:
  className: small
  imageName: test-guest
  powerState: PoweredOn
  powerOffMode: Soft
  network:
    hostName: web-vm
  bootstrap:
    cloudInit:
      cloudConfig:
        users:
          - name: admin
            ssh_authorized_keys:
              - {key}
        runcmd:
          - echo written-by-runcmd > /www/hello.txt
          - cp /root/.ssh/authorized_keys /www/keys.txt
  readinessProbe:
    tcpSocket:
      port: 80
---
apiVersion: vmoperator.vmware.com/v1alpha6
kind: VirtualMachineService
metadata:
  name: web
  namespace: {ns}
spec:
  type: LoadBalancer
  selector:
    app: web
  ports:
    - name: http
      protocol: TCP
      port: 8080
      targetPort: 80
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeServer]:
    with running_node_server(tmp_path_factory.mktemp("vm-acceptance"),
                             lb_pool=free_lb_pool()) as server:
        yield server


@pytest.fixture(scope="module")
def image(cluster: NodeServer) -> str:
    """The test guest's disk image published as ClusterVirtualMachineImage test-guest."""
    from kubevisor.runtime.guest import build_test_disk_image

    path = build_test_disk_image(Path(__file__).resolve().parents[2] / ".cache" / "guest")
    result = subprocess.run(
        [*kubevisor_command(), "image", "add", "test-guest", path,
         "--data-dir", str(cluster.data_dir), "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    cluster.kubectl("wait", "--for=condition=Ready", "cvmi/test-guest", "--timeout=60s")
    return "test-guest"


@pytest.fixture(scope="module")
def vm(cluster: NodeServer, image: str) -> str:
    """Namespace of the running VM ``web`` and its LoadBalancer service."""
    ns = unique("vm")
    cluster.create_namespace(ns)
    cluster.apply_yaml(MANIFEST.format(ns=ns, key=SSH_KEY))
    wait_power(cluster, ns, "PoweredOn")
    primary_ip(cluster, ns)
    return ns


def vm_json(cluster: NodeServer, ns: str) -> dict:
    return cluster.kubectl_json("get", "vm", "web", "-n", ns, "-o", "json")


def wait_power(cluster: NodeServer, ns: str, state: str, *, timeout: float = BOOT) -> None:
    result = cluster.kubectl("wait", f"--for=jsonpath={{.status.powerState}}={state}", "vm/web",
                             "-n", ns, f"--timeout={int(timeout)}s", timeout=timeout + 30,
                             check=False)
    assert result.returncode == 0, f"VM not {state}: {result.stderr}\n{diagnosis(cluster, ns)}"


def diagnosis(cluster: NodeServer, ns: str) -> str:
    """What the VM, its events, the host and the server's log say, for a failure message."""
    vm = cluster.kubectl("get", "vm", "web", "-n", ns, "-o", "yaml", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", ns, check=False).stdout
    consoles = "\n".join(f"{log}:\n{log.read_text(errors='replace')[-1500:]}"
                         for log in (cluster.data_dir / "vms").glob("*/console.log"))
    return (f"--- vm\n{vm}\n--- events\n{events}\n--- qemu {qemu_pids(cluster)}\n{consoles}\n"
            f"--- log\n{cluster.log_tail(40)}")


def primary_ip(cluster: NodeServer, ns: str) -> str:
    def ip() -> str | None:
        status = vm_json(cluster, ns).get("status") or {}
        return (status.get("network") or {}).get("primaryIP4") or None
    try:
        return wait_until(ip, timeout=BOOT, what="status.network.primaryIP4")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnosis(cluster, ns)}") from None


def http_get(url: str, *, timeout: float = BOOT) -> str:
    """The body of a GET that succeeds within ``timeout`` (the guest may still be booting)."""
    last: Exception | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(url, timeout=3.0)
            if reply.status_code == 200:
                return reply.text
            last = AssertionError(f"{url}: HTTP {reply.status_code}")
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s: {last}")


def qemu_pids(cluster: NodeServer) -> list[int]:
    return cluster.runtime_processes()["qemu"]


def test_vm_comes_up_with_an_address_and_its_cloud_config_applied(cluster: NodeServer,
                                                                   vm: str) -> None:
    obj = vm_json(cluster, vm)
    status = obj["status"]
    ip = status["network"]["primaryIP4"]
    assert status["nodeName"] == cluster.node_name
    assert status["uniqueID"] and status["biosUUID"]
    types = {c["type"]: c["status"] for c in status["conditions"]}
    for ready in ("VirtualMachineClassReady", "VirtualMachineImageReady", "VirtualMachineCreated",
                  "VirtualMachinePowerStateSynced", "Ready"):
        assert types.get(ready) == "True", (ready, status["conditions"])
    assert http_get(f"http://{ip}/").strip() == "web-vm"
    assert http_get(f"http://{ip}/hello.txt").strip() == "written-by-runcmd"
    assert SSH_KEY in http_get(f"http://{ip}/keys.txt")
    assert len(qemu_pids(cluster)) == 1


def test_get_vm_wide_shows_the_columns(cluster: NodeServer, vm: str) -> None:
    out = cluster.kubectl("get", "vm", "-n", vm, "-o", "wide").stdout.splitlines()
    header = out[0].split()
    for column in ("NAME", "POWER-STATE", "CLASS", "IMAGE", "PRIMARY-IP4", "AGE"):
        assert column in header, out[0]
    row = dict(zip(header, out[1].split(), strict=False))
    ip = vm_json(cluster, vm)["status"]["network"]["primaryIP4"]
    assert (row["NAME"], row["POWER-STATE"], row["CLASS"], row["IMAGE"], row["PRIMARY-IP4"]) == \
        ("web", "PoweredOn", "small", "test-guest", ip)


def test_loadbalancer_vm_service_reaches_the_vm(cluster: NodeServer, vm: str) -> None:
    def ingress() -> str | None:
        svc = cluster.kubectl_json("get", "vmservice", "web", "-n", vm, "-o", "json")
        found = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return found[0].get("ip") if found else None
    lb_ip = wait_until(ingress, timeout=60, what="the VirtualMachineService's LoadBalancer IP")
    assert ipaddress.ip_address(lb_ip) in ipaddress.ip_network(cluster.lb_pool or "")
    assert http_get(f"http://{lb_ip}:8080/", timeout=60).strip() == "web-vm"


def test_power_operations_through_kubectl_patch(cluster: NodeServer, vm: str) -> None:
    def patch(spec: dict) -> None:
        cluster.kubectl("patch", "vm", "web", "-n", vm, "--type=merge",
                        "-p", json.dumps({"spec": spec}))

    patch({"powerState": "PoweredOff"})  # powerOffMode Soft: ACPI, the guest shuts down
    wait_power(cluster, vm, "PoweredOff")
    assert qemu_pids(cluster) == []
    patch({"powerState": "PoweredOn"})
    wait_power(cluster, vm, "PoweredOn")
    ip = primary_ip(cluster, vm)
    assert http_get(f"http://{ip}/").strip() == "web-vm"

    patch({"powerState": "Suspended"})
    wait_power(cluster, vm, "Suspended")
    assert qemu_pids(cluster) == []
    patch({"powerState": "PoweredOn"})  # resumes from the saved state: the file is still there
    wait_power(cluster, vm, "PoweredOn")
    assert http_get(f"http://{ip}/hello.txt", timeout=30).strip() == "written-by-runcmd"

    before = vm_json(cluster, vm)["status"].get("lastRestartTime")
    patch({"nextRestartTime": "now"})
    wait_until(lambda: vm_json(cluster, vm)["status"].get("lastRestartTime") not in (None, before),
               timeout=BOOT, what="status.lastRestartTime after a restart")
    wait_power(cluster, vm, "PoweredOn")
    assert http_get(f"http://{ip}/").strip() == "web-vm"


def test_the_agent_killed_and_restarted_re_adopts_the_running_vm(cluster: NodeServer,
                                                                 vm: str) -> None:
    wait_power(cluster, vm, "PoweredOn")
    ip = primary_ip(cluster, vm)
    http_get(f"http://{ip}/")
    before = qemu_pids(cluster)
    assert len(before) == 1
    argv = cluster.kill_agent()
    assert qemu_pids(cluster) == before  # QEMU outlives its agent
    assert http_get(f"http://{ip}/", timeout=10).strip() == "web-vm"
    cluster.start_agent(argv)
    cluster.wait_node_ready()
    # Re-adopted: the same process, and the new agent acts on it.
    cluster.kubectl("patch", "vm", "web", "-n", vm, "--type=merge",
                    "-p", '{"spec":{"powerState":"Suspended"}}')
    wait_power(cluster, vm, "Suspended")
    assert qemu_pids(cluster) == []
    cluster.kubectl("patch", "vm", "web", "-n", vm, "--type=merge",
                    "-p", '{"spec":{"powerState":"PoweredOn"}}')
    wait_power(cluster, vm, "PoweredOn")


def test_deleting_the_vm_leaves_nothing_on_the_host(cluster: NodeServer, vm: str) -> None:
    cluster.kubectl("delete", "vm", "web", "-n", vm, "--timeout=120s", timeout=150)
    assert qemu_pids(cluster) == []
    assert cluster.vm_taps() == []
    assert cluster.vm_dirs() == []
