"""VirtualMachine create → PoweredOn with an IP, through the whole system:
``kubevisor up`` with its node agent (tests/support/nodeserver.py), the
test guest's disk image published with ``kubevisor image add``, then N
VMs one after another, each timed from the POST to the moment its status
says PoweredOn with a ``primaryIP4`` that answers HTTP (the guest's
httpd), then deleted (timed until the object is gone). Also reports the
VM controller's and node agent's share: create → ``status.nodeName``
(placement) and → ``VirtualMachineCreated`` (disk clone, seed, QEMU up).
Prints one JSON object; ``--output FILE`` also writes it there.

Run: ``.venv/bin/python bench/vm_api.py [--n 10]`` (as root: the node
agent makes a bridge and taps). The accelerator (KVM or TCG, with the
probe's reason) is in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.nodeserver import NodeServer, running_node_server  # noqa: E402
from tests.support.server import kubevisor_command  # noqa: E402

GROUP = "/apis/vmoperator.vmware.com/v1alpha6"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"n": len(samples), "p50": round(statistics.median(samples), 3),
            "p90": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 3),
            "min": round(ordered[0], 3), "max": round(ordered[-1], 3)}


def publish_image(server: NodeServer) -> None:
    from kubevisor.runtime.guest import build_test_disk_image

    path = build_test_disk_image(ROOT / ".cache" / "guest")
    subprocess.run([*kubevisor_command(), "image", "add", "test-guest", path,
                    "--data-dir", str(server.data_dir), "--kubeconfig", str(server.kubeconfig)],
                   check=True, timeout=300)


def condition_true(obj: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def one_vm(api: httpx.Client, ns: str, name: str, *, timeout: float) -> dict[str, float]:
    """Create one VM, wait for PoweredOn with an answering IP, delete it; seconds per phase."""
    body = {"apiVersion": "vmoperator.vmware.com/v1alpha6", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"className": "small", "imageName": "test-guest", "powerState": "PoweredOn"}}
    url = f"{GROUP}/namespaces/{ns}/virtualmachines"
    start = time.monotonic()
    api.post(url, json=body).raise_for_status()
    marks: dict[str, float] = {}
    deadline = start + timeout
    while time.monotonic() < deadline:
        obj = api.get(f"{url}/{name}").json()
        status = obj.get("status") or {}
        now = time.monotonic() - start
        if status.get("nodeName"):
            marks.setdefault("placed", now)
        if condition_true(obj, "VirtualMachineCreated"):
            marks.setdefault("created", now)
        ip = (status.get("network") or {}).get("primaryIP4")
        if status.get("powerState") == "PoweredOn" and ip:
            try:
                if httpx.get(f"http://{ip}/", timeout=1.0).status_code == 200:
                    marks["ready"] = time.monotonic() - start
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    else:
        raise TimeoutError(f"VM {name} not PoweredOn with an IP after {timeout}s")
    gone = time.monotonic()
    api.delete(f"{url}/{name}").raise_for_status()
    while api.get(f"{url}/{name}").status_code != 404:
        if time.monotonic() - gone > timeout:
            raise TimeoutError(f"VM {name} not deleted after {timeout}s")
        time.sleep(0.05)
    marks["deleted"] = time.monotonic() - gone
    return marks


def run(n: int, *, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubevisor-bench-vm-") as tmp, \
            running_node_server(Path(tmp)) as server:
        publish_image(server)
        ns = "bench-vm"
        server.create_namespace(ns)
        server.apply_yaml(f"""\
apiVersion: vmoperator.vmware.com/v1alpha6
kind: VirtualMachineClass
metadata: {{name: small, namespace: {ns}}}
spec: {{hardware: {{cpus: 1, memory: 256Mi}}}}
""")
        node = server.kubectl_json("get", "node", server.node_name, "-o", "json")
        with server.client(timeout=30) as api:
            runs = [one_vm(api, ns, f"vm-{i}", timeout=timeout) for i in range(n)]
    return {
        "benchmark": "vm-api", "n": n,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                 "load_avg": os.getloadavg()},
        "accel": (node["metadata"].get("annotations") or {}).get(
            "vmoperator.kubevisor.io/accel", "unknown"),
        "seconds": {phase: summary([r[phase] for r in runs])
                    for phase in ("placed", "created", "ready", "deleted")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    report = run(args.n, timeout=args.timeout)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
