"""``kubectl logs`` and ``kubectl exec`` through the apiserver into a pod the
node agent runs: the agent's stream server (started by run_node), the port
it publishes in the Node's daemonEndpoints, the real OCI driver, network and
registry. Root only; slow."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import AlreadyExistsError, Client
from tests.node.e2e import HostSetup, agent, busybox_pod, new_setup, pod_where, require_drivers
from tests.node.test_pods_e2e import busybox  # noqa: F401  (module fixture)

pytestmark = pytest.mark.slow
KUBECTL = "/usr/bin/kubectl"


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[tuple[Path, Any]]:
    """(kubeconfig, StreamServerConfig) of an apiserver that can reach node agents."""
    require_drivers()
    if shutil.which(KUBECTL) is None:
        pytest.skip("kubectl not installed")
    from kubevisor.api.builtin import builtin_registry
    from kubevisor.apiserver.config import KubeletClient, ServerConfig
    from kubevisor.apiserver.pki import ensure_node_credentials, ensure_pki
    from kubevisor.apiserver.server import serve
    from kubevisor.node.streams import StreamServerConfig
    from kubevisor.store import open_store

    pki = tmp_path / "api" / "pki"
    creds = ensure_pki(pki)
    cert, key, agent_token = ensure_node_credentials(pki, "node-e2e", sans=["127.0.0.1"])
    store = open_store("sqlite", data_dir=tmp_path / "api")
    await store.start()
    config = ServerConfig(store=store, registry=builtin_registry(),
                          kubelet_client=KubeletClient(ca_file=str(creds.ca_file),
                                                       token=agent_token))
    try:
        async with serve(config, data_dir=tmp_path / "api", tune_gc=False) as url:
            async with Client.from_kubeconfig(url.kubeconfig) as api:
                for name in ("default", "kube-node-lease"):
                    try:
                        await api.create({"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": name}})
                    except AlreadyExistsError:
                        pass
            yield url.kubeconfig, StreamServerConfig(
                cert_file=str(cert), key_file=str(key), token=agent_token, host="127.0.0.1",
                port=0)
    finally:
        await store.close()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[HostSetup]:
    s = new_setup(tmp_path / "host")
    try:
        yield s
    finally:
        await s.cleanup()


async def kubectl(kubeconfig: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_kubectl_logs_and_exec(stage: tuple[Path, Any], setup: HostSetup,
                                     busybox: str) -> None:  # noqa: F811
    kubeconfig, streams = stage
    async with agent(kubeconfig, setup, streams=streams):
        async with Client.from_kubeconfig(kubeconfig) as api:
            await api.create(busybox_pod("talk", busybox, [
                "sh", "-c", "echo hello from the pod; exec sleep 3600"]))
            await pod_where(api, "talk", lambda p: p["status"].get("phase") == "Running")
            node = await api.get("v1", "Node", "node-e2e")
            port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            assert port not in (0, 10250)  # the port the stream server bound
        code, out = await kubectl(kubeconfig, "logs", "talk")
        assert code == 0 and "hello from the pod" in out, out
        code, out = await kubectl(kubeconfig, "exec", "talk", "--", "cat", "/etc/hostname")
        assert code == 0 and out.strip() == "talk", out
