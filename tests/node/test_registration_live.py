"""Registration, status reports and the Lease against a real apiserver."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kubevisor.client import Client
from kubevisor.node.clock import parse
from kubevisor.node.config import NodeConfig
from kubevisor.node.registration import NodeRegistrar


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_register_status_and_lease(api: Client, tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    config = NodeConfig(node_name="node-a", data_dir=tmp_path / "data",
                        pod_cidr="10.244.0.0/24", max_pods=50)
    reg = NodeRegistrar(api, config, runtime_version="runc://1.1.5", clock=clock)
    await reg.register()
    node = await api.get("v1", "Node", "node-a")
    assert node["spec"]["podCIDR"] == "10.244.0.0/24"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"
    status = node["status"]
    assert status["capacity"]["pods"] == "50"
    assert int(status["capacity"]["cpu"]) >= 1
    assert status["capacity"]["memory"].endswith("Ki")
    assert status["nodeInfo"]["containerRuntimeVersion"] == "runc://1.1.5"
    assert status["nodeInfo"]["bootID"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"

    # Nothing changed: no write; 5 minutes later: a write with a new heartbeat.
    rv = node["metadata"]["resourceVersion"]
    clock.now += 10
    assert not await reg.report_status()
    assert (await api.get("v1", "Node", "node-a"))["metadata"]["resourceVersion"] == rv
    clock.now += 300
    assert await reg.report_status()
    node = await api.get("v1", "Node", "node-a")
    ready2 = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
    assert parse(ready2["lastHeartbeatTime"]) == int(clock.now)
    assert ready2["lastTransitionTime"] == ready["lastTransitionTime"]

    # Lease: created, then renewed.
    lease = await reg.renew_lease()
    assert lease["spec"]["holderIdentity"] == "node-a"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    first = parse(lease["spec"]["renewTime"])
    clock.now += 10
    lease = await reg.renew_lease()
    got = await api.get("coordination.k8s.io/v1", "Lease", "node-a", namespace="kube-node-lease")
    assert parse(got["spec"]["renewTime"]) == first + 10 == parse(lease["spec"]["renewTime"])


async def test_reregister_keeps_cidr_and_run_loop(api: Client, tmp_path: Path) -> None:
    await api.create({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": "node-b"}, "spec": {"podCIDR": "10.1.0.0/24"}})
    config = NodeConfig(node_name="node-b", data_dir=tmp_path / "data", pod_cidr="10.2.0.0/24",
                        lease_renew_seconds=0.05, status_check_seconds=0.05)
    reg = NodeRegistrar(api, config, runtime_version="crun://1.8")
    task = asyncio.create_task(reg.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.05)
            try:
                lease = await api.get("coordination.k8s.io/v1", "Lease", "node-b",
                                      namespace="kube-node-lease")
            except Exception:
                continue
            break
        renew = parse(lease["spec"]["renewTime"])
        await asyncio.sleep(0.3)
        lease = await api.get("coordination.k8s.io/v1", "Lease", "node-b",
                              namespace="kube-node-lease")
        assert parse(lease["spec"]["renewTime"]) > renew  # type: ignore[operator]
    finally:
        task.cancel()
    node = await api.get("v1", "Node", "node-b")
    assert node["spec"]["podCIDR"] == "10.1.0.0/24"
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "crun://1.8"
