"""Tests of the workload controllers play the node agent and the scheduler:
they create Node objects, bind pods and set pod status through the API (as
a client of the API, the way the real agent will). Imported by
test_statefulset*, test_daemonset*, test_job*, test_nodelifecycle*."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubevisor.client import Client, ConflictError, NotFoundError

JSON = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0,
                     what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; returns that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert loop.time() < deadline, f"{what} not met in {timeout}s"
        await asyncio.sleep(0.05)


async def namespace(api: Client, name: str) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def pods(api: Client, ns: str, selector: str | None = None) -> dict[str, JSON]:
    listed = await api.list("v1", "Pod", namespace=ns, label_selector=selector)
    return {p["metadata"]["name"]: p for p in listed["items"]}


async def set_phase(api: Client, ns: str, name: str, phase: str, *, ready: bool = False,
                    exit_code: int | None = None) -> JSON:
    """What the node agent reports: phase and the Ready condition."""
    status: JSON = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now()}]}
    if exit_code is not None:
        status["containerStatuses"] = [{
            "name": "c", "image": "busybox", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "finishedAt": now(),
                                     "reason": "Completed" if exit_code == 0 else "Error"}}}]
    return await api.patch("v1", "Pod", name, {"status": status}, namespace=ns,
                           subresource="status")


async def run_ready(api: Client, ns: str, name: str) -> JSON:
    return await set_phase(api, ns, name, "Running", ready=True)


async def finish_deletions(api: Client, ns: str) -> None:
    """The agent's last word on pods being deleted: delete them for good."""
    for name, pod in (await pods(api, ns)).items():
        if pod["metadata"].get("deletionTimestamp"):
            try:
                await api.delete("v1", "Pod", name, namespace=ns, grace_period_seconds=0)
            except NotFoundError:
                pass


def node(name: str, *, labels: dict[str, str] | None = None,
         taints: list[JSON] | None = None, ready: bool = True) -> JSON:
    spec: JSON = {}
    if taints:
        spec["taints"] = taints
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": spec,
            "status": {"conditions": [{
                "type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}}


async def bind(api: Client, ns: str, name: str, node_name: str) -> None:
    """What the scheduler does: POST pods/<name>/binding (unless the
    scheduler the manager runs was faster)."""
    with contextlib.suppress(ConflictError):
        await api.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body={
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}})


KUBECTL = "/usr/bin/kubectl"


async def kubectl(kubeconfig: Path, *args: str, timeout: float = 60.0) -> str:
    """The real kubectl on the ``api`` fixture's server (its kubeconfig is
    ``tmp_path / "kubeconfig"``), run without blocking the server's loop."""
    home = kubeconfig.parent / "home"
    home.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
             "KUBECONFIG": str(kubeconfig)})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()
