"""``kubevisor join`` end to end: a real ``kubevisor up --no-node`` server,
the controller manager with the server's CA and a cluster CIDR (run here,
as ``kubevisor up`` will run it), ``kubevisor token create
--print-join-command``, then ``kubevisor join`` as a process with its own
data dir, node name and host network names. It ends with the Node
registered and Ready, with a pod CIDR from node IPAM and credentials from
TLS bootstrap; a join with a wrong CA hash is refused with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubevisor.cli.clusterinfo import publish_cluster_info
from kubevisor.client import Client
from kubevisor.controllers.manager import run_controllers
from tests.node.e2e import HostSetup, new_setup, require_drivers
from tests.support.server import KubevisorServer, kubevisor_command, running_server, unique

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the node agent needs root")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubevisorServer]:
    with running_server(tmp_path / "server", extra_args=["--controllers", "none"]) as srv:
        yield srv


async def _publish(server: KubevisorServer) -> None:
    """What ``kubevisor up`` does after creating the system namespaces
    (which it does just after /readyz turns ok: wait for kube-public)."""
    async with server.async_client() as admin:
        for _ in range(100):
            if (await admin.get("/api/v1/namespaces/kube-public")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        await publish_cluster_info(server.url, server.ca_pem, admin=admin)


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*kubevisor_command(), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


async def _node_ready(client: Client, name: str) -> dict[str, Any] | None:
    try:
        node = await client.get("v1", "Node", name)
    except Exception:
        return None
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = [c for c in conditions if c.get("type") == "Ready" and c.get("status") == "True"]
    return node if ready else None


@dataclass
class Joined:
    node: dict[str, Any]
    setup: HostSetup


@contextlib.asynccontextmanager
async def joined(server: KubevisorServer, setup: HostSetup, node_name: str,
                 log_path: Path) -> AsyncIterator[Joined]:
    """``kubevisor token create --print-join-command`` on the server, then
    that ``kubevisor join`` (with this test's data dir, node name and
    network names) as a process until its Node is Ready; SIGTERM (exit 0
    expected) and host cleanup on the way out."""
    for _ in range(50):  # kube-system is created just after /readyz
        created = await asyncio.to_thread(_run, "token", "create", "--data-dir",
                                          str(server.data_dir), "--print-join-command")
        if created.returncode == 0:
            break
        await asyncio.sleep(0.1)
    assert created.returncode == 0, created.stderr
    join_args = shlex.split(created.stdout.strip())
    assert join_args[:2] == ["kubevisor", "join"] and "--ca-cert-hash" in join_args
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [*kubevisor_command(), *join_args[1:], "--data-dir", str(setup.data_dir),
         "--node-name", node_name, "--node-ip", "127.0.0.1",
         "--network-prefix", setup.prefix, "--cgroup-parent", f"/{setup.prefix}",
         "--stream-port", "0", "--timeout", "30"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        async with Client.from_kubeconfig(server.kubeconfig) as admin:
            deadline = asyncio.get_running_loop().time() + 90
            node = None
            while node is None:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert asyncio.get_running_loop().time() < deadline, log_path.read_text()[-3000:]
                node = await _node_ready(admin, node_name)
                await asyncio.sleep(0.3)
        yield Joined(node=node, setup=setup)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        await setup.cleanup()
    assert proc.returncode == 0, log_path.read_text()[-3000:]


@pytest.mark.slow
async def test_join_registers_a_ready_node(server: KubevisorServer, tmp_path: Path) -> None:
    require_drivers()
    setup = new_setup(tmp_path / "joined")
    await _publish(server)
    pki = server.data_dir / "pki"
    stop = asyncio.Event()
    manager = asyncio.create_task(run_controllers(
        server.kubeconfig, stop, ca_cert_file=pki / "ca.crt", ca_key_file=pki / "ca.key",
        cluster_cidr=setup.pod_cidr))
    node_name = unique("joined")
    try:
        async with joined(server, setup, node_name, tmp_path / "join.log") as result:
            assert result.node["spec"]["podCIDR"] == setup.pod_cidr
            async with Client.from_kubeconfig(server.kubeconfig) as admin:
                csrs = await admin.list("certificates.k8s.io/v1", "CertificateSigningRequest")
            requesters = sorted(c["spec"]["username"] for c in csrs["items"])
            assert requesters[0].startswith("system:bootstrap:")
            assert requesters[1] == f"system:node:{node_name}"
            kubeconfig = yaml.safe_load((setup.data_dir / "kubelet.kubeconfig").read_text())
            user = kubeconfig["users"][0]
            assert user["name"] == f"system:node:{node_name}" and "token" not in user["user"]
            for name in ("ca.crt", "node-client.crt", "node-client.key", "node-serving.crt",
                         "node-serving.key"):
                assert (setup.data_dir / "pki" / name).exists(), name
            assert not (setup.data_dir / "pki" / "ca.key").exists()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(manager, 10)


async def test_join_refuses_a_wrong_ca_hash(server: KubevisorServer, tmp_path: Path) -> None:
    await _publish(server)
    async with Client.from_kubeconfig(server.kubeconfig) as admin:
        from kubevisor.cli.tokens import create_token

        token = await create_token(admin)
    result = await asyncio.to_thread(
        _run, "join", "--server", server.url, "--token", token, "--ca-cert-hash",
        "sha256:" + "ab" * 32, "--data-dir", str(tmp_path / "node"), "--node-name", "nope")
    assert result.returncode == 1
    assert "does not match --ca-cert-hash" in result.stderr
    assert not (tmp_path / "node" / "kubelet.kubeconfig").exists()
    # A server that is not there: a one-line error too.
    result = await asyncio.to_thread(
        _run, "join", "--server", "https://127.0.0.1:1", "--token", token,
        "--data-dir", str(tmp_path / "node"))
    assert result.returncode == 1 and result.stderr.startswith("error: cannot reach")


async def test_kubectl_certificate_approve_and_deny(server: KubevisorServer) -> None:
    """``kubectl certificate approve|deny`` go through the approval subresource."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from kubevisor.cli import join

    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    async with Client.from_kubeconfig(server.kubeconfig) as admin:
        for _ in range(2):
            csr = join.csr_object(join.certificate_request(key, "by-hand"), "example.com/by-hand",
                                  ["digital signature", "client auth"])
            names.append((await admin.create(csr))["metadata"]["name"])
    approve = await asyncio.to_thread(server.kubectl, "certificate", "approve", names[0])
    assert f"certificatesigningrequest.certificates.k8s.io/{names[0]} approved" in approve.stdout
    await asyncio.to_thread(server.kubectl, "certificate", "deny", names[1])
    got = await asyncio.to_thread(server.kubectl_json, "get", "csr")
    conditions = {c["metadata"]["name"]: [(x["type"], x["reason"]) for x in
                                          c["status"]["conditions"]] for c in got["items"]}
    assert conditions == {names[0]: [("Approved", "KubectlApprove")],
                          names[1]: [("Denied", "KubectlDeny")]}


def test_token_commands(server: KubevisorServer) -> None:
    with server.client() as http:  # kube-system is created just after /readyz
        for _ in range(100):
            if http.get("/api/v1/namespaces/kube-system").status_code == 200:
                break
            time.sleep(0.05)
    created = _run("token", "create", "--data-dir", str(server.data_dir), "--ttl", "1h",
                   "--description", "rack 2")
    assert created.returncode == 0, created.stderr
    token_id = created.stdout.strip().split(".")[0]
    listed = _run("token", "list", "--data-dir", str(server.data_dir))
    header, row = listed.stdout.splitlines()
    assert header.split()[:2] == ["TOKEN", "ID"] and row.split()[0] == token_id
    assert "rack 2" in row and "authentication,signing" in row
    deleted = _run("token", "delete", token_id, "--data-dir", str(server.data_dir))
    assert deleted.stdout.strip() == f'bootstrap token "{token_id}" deleted'
    assert _run("token", "list", "--data-dir", str(server.data_dir)).stdout.count("\n") == 1
    bad = _run("token", "create", "--data-dir", str(server.data_dir), "--ttl", "soon")
    assert bad.returncode == 1 and "--ttl" in bad.stderr
