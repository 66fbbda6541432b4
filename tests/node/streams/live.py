"""A live stage for the stream server: a real apiserver (with credentials
for node agents), the stream server on loopback with a node certificate
from the same CA, a Node whose daemonEndpoints point at it, and a Pod
whose container runs under the real OCI driver (runc or crun, busybox
rootfs) inside a network namespace made for the test.

Used by the live tests in this directory; :func:`kubectl` runs the real
``/usr/bin/kubectl`` against the stage without blocking the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubevisor.node.containers import Identity
from kubevisor.node.streams import StreamServerConfig, serve_streams
from kubevisor.runtime.types import ContainerSpec, PodNetworkInfo
from tests.runtime.oci.conftest import BUSYBOX, build_busybox_rootfs

KUBECTL = "/usr/bin/kubectl"
NODE = "node-s"


def require_live() -> None:
    if os.geteuid() != 0:
        pytest.skip("running containers and network namespaces needs root")
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static not installed")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 not installed")


class NamespaceNetwork:
    """PodNetwork's read side over namespaces this test made (the real
    driver is tested in tests/runtime/network; here only ``list_pods``
    matters)."""

    def __init__(self) -> None:
        self.pods: dict[str, PodNetworkInfo] = {}

    async def setup_pod(self, pod_id: str) -> PodNetworkInfo:
        return self.pods[pod_id]

    async def teardown_pod(self, pod_id: str) -> None:
        self.pods.pop(pod_id, None)

    async def list_pods(self) -> dict[str, PodNetworkInfo]:
        return dict(self.pods)


@dataclass
class Stage:
    root: Path
    kubeconfig: Path
    api: httpx.AsyncClient
    agent_url: str
    agent_port: int
    token: str
    ca_file: str
    runtime: Any
    network: NamespaceNetwork
    pods_dir: Path
    rootfs: Path
    netns_names: list[str]

    async def make_pod(self, name: str, command: list[str], *, containers: tuple[str, ...] = ("app",),
                       netns: bool = True, stdin: bool = False, tty: bool = False,
                       running: bool = True) -> str:
        """Create the Pod in the API, run its containers (attempt 0) and
        mark it Running; returns its uid."""
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": NODE, "containers": [
                    {"name": c, "image": "busybox", "stdin": stdin, "tty": tty} for c in containers]}}
        r = await self.api.post("/api/v1/namespaces/default/pods", json=body)
        assert r.status_code == 201, r.text
        uid = r.json()["metadata"]["uid"]
        netns_path = None
        if netns:
            netns_name = "kvs" + secrets.token_hex(3)
            subprocess.run(["ip", "netns", "add", netns_name], check=True)
            self.netns_names.append(netns_name)
            subprocess.run(["ip", "-n", netns_name, "link", "set", "lo", "up"], check=True)
            netns_path = f"/run/netns/{netns_name}"
            self.network.pods[uid] = PodNetworkInfo(netns=netns_path, ip="", gateway="",
                                                    prefix_len=0)
        for cname in containers:
            await self.run_container(uid, name, cname, 0, command, netns=netns_path,
                                     stdin=stdin, tty=tty)
        if running:
            status = {"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"}]}}
            r = await self.api.patch(f"/api/v1/namespaces/default/pods/{name}/status", json=status,
                                     headers={"Content-Type": "application/merge-patch+json"})
            assert r.status_code == 200, r.text
        return uid

    async def run_container(self, uid: str, pod: str, name: str, attempt: int, command: list[str],
                            *, netns: str | None = None, stdin: bool = False,
                            tty: bool = False) -> str:
        ident = Identity(pod_uid=uid, namespace="default", pod_name=pod, name=name, attempt=attempt)
        log_path = self.pods_dir / uid / "logs" / name / f"{attempt}.log"
        await self.runtime.run(ContainerSpec(
            id=ident.id, rootfs=str(self.rootfs), args=command, log_path=str(log_path),
            hostname=pod, netns=netns, labels=ident.labels(), stdin=stdin, tty=tty))
        return ident.id


async def kubectl(stage: Stage, *args: str, input: bytes | None = None,
                  timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(stage.kubeconfig), *args,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def live_stage(root: Path, *, pod_lookup: Any = None) -> AsyncIterator[Stage]:
    from kubevisor.api.builtin import builtin_registry
    from kubevisor.apiserver.config import KubeletClient, ServerConfig
    from kubevisor.apiserver.pki import ensure_node_credentials, ensure_pki
    from kubevisor.apiserver.server import serve
    from kubevisor.runtime.oci import open_runtime
    from kubevisor.store import open_store

    pki = root / "api" / "pki"
    creds = ensure_pki(pki)
    cert, key, agent_token = ensure_node_credentials(pki, NODE, sans=["127.0.0.1"])
    store = open_store("sqlite", data_dir=root / "api")
    await store.start()
    config = ServerConfig(store=store, registry=builtin_registry(),
                          kubelet_client=KubeletClient(ca_file=str(creds.ca_file), token=agent_token))
    rootfs = build_busybox_rootfs(root / "rootfs")
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text("<h1>kubevisor streams</h1>\n")
    (rootfs / "etc" / "hostname").write_text("from-the-image\n")
    cgroup_parent = "/kvs-" + secrets.token_hex(3)
    runtime = await open_runtime(str(root / "containers"), cgroup_parent=cgroup_parent)
    network = NamespaceNetwork()
    pods_dir = root / "node" / "pods"
    stream_config = StreamServerConfig(cert_file=str(cert), key_file=str(key), token=agent_token,
                                       host="127.0.0.1", port=0, pod_lookup=pod_lookup)
    netns_names: list[str] = []
    try:
        async with serve(config, data_dir=root / "api", tune_gc=False) as url, \
                serve_streams(stream_config, runtime, network, pods_dir) as port:
            async with httpx.AsyncClient(
                    base_url=str(url), verify=ssl.create_default_context(cafile=str(creds.ca_file)),
                    headers={"Authorization": f"Bearer {creds.token}"}) as api:
                ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
                assert (await api.post("/api/v1/namespaces", json=ns)).status_code == 201
                node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
                assert (await api.post("/api/v1/nodes", json=node)).status_code == 201
                status = {"status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}}
                r = await api.patch(f"/api/v1/nodes/{NODE}/status", json=status,
                                    headers={"Content-Type": "application/merge-patch+json"})
                assert r.status_code == 200, r.text
                yield Stage(root=root, kubeconfig=url.kubeconfig, api=api,
                            agent_url=f"https://127.0.0.1:{port}", agent_port=port,
                            token=agent_token, ca_file=str(creds.ca_file), runtime=runtime,
                            network=network, pods_dir=pods_dir, rootfs=rootfs,
                            netns_names=netns_names)
    finally:
        for state in await runtime.list():
            with contextlib.suppress(Exception):
                await runtime.remove(state.id)
        for name in netns_names:
            subprocess.run(["ip", "netns", "delete", name], check=False)
        leaf = cgroup_parent.lstrip("/")
        for base in [Path("/sys/fs/cgroup") / leaf, *Path("/sys/fs/cgroup").glob("*/" + leaf)]:
            with contextlib.suppress(OSError):
                base.rmdir()
