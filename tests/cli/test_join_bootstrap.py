"""``kubevisor join``'s TLS bootstrap against a real apiserver and the real
controller manager (signer with the server's CA): credentials written with
safe modes, a second run with valid credentials makes no new request, a
lost serving certificate is asked for again, a refused token is a clear
error, and a request nobody approves times out with a hint."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kubevisor.cli import clusterinfo, join
from kubevisor.cli.tokens import create_token, generate_token
from kubevisor.client import Client, load_kubeconfig
from kubevisor.controllers.manager import run_controllers_with
from tests.client.live import live_apiserver, require_apiserver

CSR = ("certificates.k8s.io/v1", "CertificateSigningRequest")


@dataclass
class Cluster:
    url: str
    admin: Client


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, *, signer: bool = True) -> AsyncIterator[Cluster]:
    require_apiserver()
    async with live_apiserver(tmp_path / "server") as live:
        stop = asyncio.Event()
        async with Client.from_kubeconfig(live.kubeconfig) as admin:
            for ns in ("kube-system", "kube-public"):
                await admin.create({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}})
            ca_pem = (load_kubeconfig(live.kubeconfig).ca_pem or "").encode()
            async with _admin_http(live.url, live.kubeconfig) as http:
                await clusterinfo.publish_cluster_info(live.url, ca_pem, admin=http)
            pki = tmp_path / "server" / "pki"
            kwargs = {"ca_cert_file": pki / "ca.crt", "ca_key_file": pki / "ca.key"} \
                if signer else {}
            manager = asyncio.create_task(run_controllers_with(admin, stop, **kwargs))
            try:
                yield Cluster(url=live.url, admin=admin)
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(manager, 10)


def _admin_http(url: str, kubeconfig: Path) -> httpx.AsyncClient:
    conn = load_kubeconfig(kubeconfig)
    return httpx.AsyncClient(base_url=url, verify=conn.ssl_context(),
                             headers={"Authorization": f"Bearer {conn.token}"})


async def _token(c: Cluster) -> str:
    token = await create_token(c.admin)
    await asyncio.sleep(0.2)  # the apiserver's token cache follows a watch
    return token


async def test_bootstrap_once_then_reuse(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        options = join.JoinOptions(server=c.url, token=await _token(c),
                                   data_dir=tmp_path / "node", node_name="w1",
                                   node_ip="192.0.2.10", timeout=10)
        kubeconfig = await join.tls_bootstrap(options)
        pki = options.pki_dir
        for name, mode in (("ca.crt", 0o644), (join.CLIENT_KEY, 0o600), (join.CLIENT_CERT, 0o644),
                           (join.SERVING_KEY, 0o600), (join.SERVING_CERT, 0o644)):
            assert stat.S_IMODE((pki / name).stat().st_mode) == mode, name
        assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
        assert len((await c.admin.list(*CSR))["items"]) == 2
        # Valid credentials: nothing asked again (even with a token now useless).
        again = join.JoinOptions(server=c.url, token=generate_token(), data_dir=options.data_dir,
                                 node_name="w1", timeout=10)
        assert await join.tls_bootstrap(again) == kubeconfig
        assert len((await c.admin.list(*CSR))["items"]) == 2
        # A lost serving certificate is asked for again, as the node.
        (pki / join.SERVING_CERT).unlink()
        await join.tls_bootstrap(again)
        items = (await c.admin.list(*CSR))["items"]
        assert len(items) == 3
        assert [i["spec"]["username"] for i in items].count("system:node:w1") == 2
        # The node's kubeconfig works.
        async with Client.from_kubeconfig(kubeconfig) as node:
            await node.get("v1", "Namespace", "kube-system")


async def test_unknown_token_is_a_clear_error(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await _token(c)  # some other token signed cluster-info
        ca_hash = clusterinfo.ca_cert_hash((load_kubeconfig(
            tmp_path / "server" / "kubeconfig").ca_pem or "").encode())
        options = join.JoinOptions(server=c.url, token=generate_token(), node_name="w2",
                                   data_dir=tmp_path / "node", ca_cert_hashes=(ca_hash,))
        with pytest.raises(join.JoinError, match="refused the token"):
            await join.tls_bootstrap(options)


async def test_unsigned_request_times_out_with_a_hint(tmp_path: Path) -> None:
    async with cluster(tmp_path, signer=False) as c:
        options = join.JoinOptions(server=c.url, token=await _token(c), node_name="w3",
                                   data_dir=tmp_path / "node", timeout=1)
        with pytest.raises(join.JoinError, match="kubectl certificate approve"):
            await join.tls_bootstrap(options)
