"""Bootstrap tokens and cluster-info against a real in-process apiserver:
a token created by ``kubevisor token create``'s code authenticates as
``system:bootstrap:<id>``; a wrong secret, an expired or a deleted token
gets 401; cluster-info is readable without credentials, its CA is checked
against ``--ca-cert-hash`` and the token's signature."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kubevisor.cli import clusterinfo
from kubevisor.cli.tokens import create_token, generate_token, parse_duration, token_secret
from kubevisor.client import Client
from tests.client.live import Live, live_apiserver, require_apiserver


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Live, Client]]:
    require_apiserver()
    async with live_apiserver(tmp_path) as server:
        async with Client.from_kubeconfig(server.kubeconfig) as admin:
            for ns in ("kube-system", "kube-public"):
                await admin.create({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}})
            yield server, admin


def _ca(live: Live) -> ssl.SSLContext:
    from kubevisor.client import load_kubeconfig

    return ssl.create_default_context(cadata=load_kubeconfig(live.kubeconfig).ca_pem)


async def _get_ns(live: Live, token: str) -> int:
    async with httpx.AsyncClient(base_url=live.url, verify=_ca(live)) as http:
        response = await http.get("/api/v1/namespaces/kube-system",
                                  headers={"Authorization": f"Bearer {token}"})
        return response.status_code


async def _eventually(check: object, want: int, timeout: float = 5.0) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()  # type: ignore[operator]
        if got == want or asyncio.get_running_loop().time() > deadline:
            return int(got)
        await asyncio.sleep(0.05)


def test_token_shape_and_secret() -> None:
    token = generate_token()
    token_id, secret = token.split(".")
    assert len(token_id) == 6 and len(secret) == 16 and token.islower()
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    obj = token_secret(token, ttl=parse_duration("1h30m"), now=now)
    data = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    assert obj["metadata"] == {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"}
    assert obj["type"] == "bootstrap.kubernetes.io/token"
    assert data["expiration"] == "2026-01-01T01:30:00Z"
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    assert "expiration" not in token_secret(token, ttl=parse_duration("0"))["data"]
    with pytest.raises(ValueError):
        parse_duration("a day")


async def test_bootstrap_token_authenticates(live: tuple[Live, Client]) -> None:
    server, admin = live
    token = await create_token(admin)
    token_id, secret = token.split(".")
    assert await _eventually(lambda: _get_ns(server, token), 200) == 200
    # A wrong secret, and a token of the right shape nobody made: 401.
    wrong = f"{token_id}.{'0' * 16 if secret != '0' * 16 else '1' * 16}"
    assert await _get_ns(server, wrong) == 401
    assert await _get_ns(server, generate_token()) == 401
    # Deleting the Secret revokes the token.
    await admin.delete("v1", "Secret", f"bootstrap-token-{token_id}", namespace="kube-system")
    assert await _eventually(lambda: _get_ns(server, token), 401) == 401


async def test_bootstrap_token_user_and_groups(live: tuple[Live, Client]) -> None:
    """The identity the CSR strategy records for a bootstrap-token caller."""
    server, admin = live
    token = await create_token(admin)
    await _eventually(lambda: _get_ns(server, token), 200)
    async with Client(server.url, token=token, verify=_ca(server)) as joiner:
        csr = await joiner.create({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "t-"},
            "spec": {"request": base64.b64encode(b"not checked here").decode(),
                     "signerName": "example.com/none", "usages": ["client auth"],
                     "username": "system:admin", "groups": ["system:masters"]}})
    assert csr["spec"]["username"] == f"system:bootstrap:{token.split('.')[0]}"
    assert csr["spec"]["groups"] == ["system:bootstrappers",
                                     "system:bootstrappers:kubeadm:default-node-token",
                                     "system:authenticated"]


async def test_expired_token_refused(live: tuple[Live, Client]) -> None:
    server, admin = live
    token = generate_token()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    await admin.create(token_secret(token, ttl=dt.timedelta(hours=1), now=past))
    fresh = await create_token(admin)  # to know the watch has delivered both
    await _eventually(lambda: _get_ns(server, fresh), 200)
    assert await _get_ns(server, token) == 401


async def test_cluster_info_fetch_and_ca_hash(live: tuple[Live, Client]) -> None:
    server, admin = live
    from kubevisor.client import load_kubeconfig

    ca_pem = load_kubeconfig(server.kubeconfig).ca_pem.encode()
    async with httpx.AsyncClient(base_url=server.url, verify=_ca(server),
                                 headers={"Authorization": f"Bearer {admin_token(server)}"}) as http:
        await clusterinfo.publish_cluster_info("https://10.0.0.1:6443", ca_pem, admin=http)
        await clusterinfo.publish_cluster_info("https://10.0.0.1:6443", ca_pem, admin=http)
    # Anonymous read of cluster-info only.
    async with httpx.AsyncClient(base_url=server.url, verify=_ca(server)) as anon:
        assert (await anon.get(clusterinfo.PATH)).status_code == 200
        assert (await anon.get("/api/v1/namespaces/kube-public/configmaps")).status_code == 401
    token = await create_token(admin)
    info = await clusterinfo.fetch_cluster_info(server.url)
    assert info.server == "https://10.0.0.1:6443" and info.ca_pem == ca_pem
    right = clusterinfo.ca_cert_hash(ca_pem)
    assert right.startswith("sha256:") and len(right) == 71
    assert clusterinfo.trusted_ca(info, token=token, ca_cert_hashes=[right]) == ca_pem
    # Without a hash the token's signature vouches for the server.
    assert clusterinfo.trusted_ca(info, token=token, ca_cert_hashes=[]) == ca_pem
    wrong = "sha256:" + "0" * 64
    with pytest.raises(clusterinfo.DiscoveryError, match="does not match --ca-cert-hash"):
        clusterinfo.trusted_ca(info, token=token, ca_cert_hashes=[wrong])
    with pytest.raises(clusterinfo.DiscoveryError, match="expected"):
        clusterinfo.trusted_ca(info, token=token, ca_cert_hashes=["md5:abc"])
    # A token the server never saw has no signature; a forged one fails.
    other = generate_token()
    with pytest.raises(clusterinfo.DiscoveryError, match="no signature"):
        clusterinfo.trusted_ca(info, token=other, ca_cert_hashes=[])
    forged = clusterinfo.ClusterInfo(
        server=info.server, ca_pem=info.ca_pem, kubeconfig=info.kubeconfig,
        signatures={other.split(".")[0]: clusterinfo.sign(info.kubeconfig, generate_token())})
    with pytest.raises(clusterinfo.DiscoveryError, match="does not verify"):
        clusterinfo.trusted_ca(forged, token=other, ca_cert_hashes=[])


def admin_token(server: Live) -> str:
    from kubevisor.client import load_kubeconfig

    return load_kubeconfig(server.kubeconfig).token or ""


async def test_list_and_delete_tokens(live: tuple[Live, Client]) -> None:
    from kubevisor.cli.tokens import delete_token, list_tokens

    server, admin = live
    from kubevisor.client import load_kubeconfig

    ca_pem = (load_kubeconfig(server.kubeconfig).ca_pem or "").encode()
    async with httpx.AsyncClient(base_url=server.url, verify=_ca(server),
                                 headers={"Authorization": f"Bearer {admin_token(server)}"}) as http:
        await clusterinfo.publish_cluster_info(server.url, ca_pem, admin=http)
    token = await create_token(admin, description="for w1")
    token_id = token.split(".")[0]
    await _eventually(lambda: _get_ns(server, token), 200)
    [listed] = await list_tokens(admin)
    assert listed["id"] == token_id and listed["description"] == "for w1"
    assert listed["usages"] == "authentication,signing"
    assert token_id in (await clusterinfo.fetch_cluster_info(server.url)).signatures
    await delete_token(admin, token)
    assert await list_tokens(admin) == []
    assert token_id not in (await clusterinfo.fetch_cluster_info(server.url)).signatures
    assert await _eventually(lambda: _get_ns(server, token), 401) == 401
