"""Node certificate requests against a real apiserver and the real
controller manager (approver + signer with the server's CA): a bootstrap
token gets a node client certificate, the apiserver accepts that
certificate as ``system:node:<name>``, the node gets its serving
certificate; requests breaking the signer rules or asking for another node
are left unapproved; a Denied request is never signed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubevisor.cli import join
from kubevisor.cli.tokens import create_token
from kubevisor.client import Client, load_kubeconfig
from kubevisor.controllers import csrapproving, csrrules
from kubevisor.controllers.manager import run_controllers_with
from tests.client.live import live_apiserver, require_apiserver

CSR = ("certificates.k8s.io/v1", "CertificateSigningRequest")


@dataclass
class Cluster:
    url: str
    admin: Client
    ca_pem: str
    tmp: Path


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    require_apiserver()
    async with live_apiserver(tmp_path) as live:
        stop = asyncio.Event()
        async with Client.from_kubeconfig(live.kubeconfig) as admin:
            await admin.create({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": "kube-system"}})
            manager = asyncio.create_task(run_controllers_with(
                admin, stop, ca_cert_file=tmp_path / "pki" / "ca.crt",
                ca_key_file=tmp_path / "pki" / "ca.key"))
            try:
                yield Cluster(url=live.url, admin=admin,
                              ca_pem=load_kubeconfig(live.kubeconfig).ca_pem or "", tmp=tmp_path)
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(manager, 10)


async def _bootstrap_client(cluster: Cluster) -> Client:
    token = await create_token(cluster.admin)
    deadline = asyncio.get_running_loop().time() + 5
    client = Client(cluster.url, token=token,
                    verify=ssl.create_default_context(cadata=cluster.ca_pem))
    while True:  # until the apiserver's token cache has it
        try:
            await client.get("v1", "Namespace", "kube-system")
            return client
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _wait(client: Client, name: str, check: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        csr = await client.get(*CSR, name)
        if check(csr):
            return csr
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {csr}"
        await asyncio.sleep(0.1)


async def test_node_client_then_serving_certificate(cluster: Cluster) -> None:
    ca = x509.load_pem_x509_certificate(cluster.ca_pem.encode())
    boot = await _bootstrap_client(cluster)
    key = ec.generate_private_key(ec.SECP256R1())
    async with boot:
        pem = await join.request_certificate(boot, join.certificate_request(key, "n1"),
                                             join.CLIENT_SIGNER,
                                             ["digital signature", "client auth"], timeout=10)
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca)
    assert cert.subject == join.node_subject("n1")
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)
    csrs = (await cluster.admin.list(*CSR))["items"]
    assert csrs[0]["spec"]["username"].startswith("system:bootstrap:")
    assert csrs[0]["status"]["conditions"][0]["reason"] == "AutoApproved"

    # The certificate is accepted by the apiserver as the node.
    pki = cluster.tmp / "node"
    pki.mkdir()
    (pki / "ca.crt").write_text(cluster.ca_pem)
    join._write(pki / "c.crt", pem, mode=0o644)
    join._write(pki / "c.key", join._key_pem(key), mode=0o600)
    doc = join.node_kubeconfig(cluster.url, pki / "ca.crt", pki / "c.crt", pki / "c.key", "n1")
    (pki / "kubeconfig").write_text(yaml.safe_dump(doc))
    async with Client.from_kubeconfig(pki / "kubeconfig") as node:
        assert (await node.get("v1", "Namespace", "kube-system"))["metadata"]["name"]
        skey = ec.generate_private_key(ec.SECP256R1())
        spem = await join.request_certificate(
            node, join.certificate_request(skey, "n1", dns_names=["n1"], ips=["192.0.2.7"]),
            join.SERVING_SIGNER, ["digital signature", "server auth"], timeout=10)
        mine = [c for c in (await node.list(*CSR))["items"]
                if c["spec"]["signerName"] == join.SERVING_SIGNER]
    assert mine[0]["spec"]["username"] == "system:node:n1"
    assert "system:nodes" in mine[0]["spec"]["groups"]
    serving = x509.load_pem_x509_certificate(spem)
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["n1"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]


async def test_requests_not_auto_approved(cluster: Cluster) -> None:
    boot = await _bootstrap_client(cluster)
    key = ec.generate_private_key(ec.SECP256R1())
    async with boot:
        # A bootstrap token may not get a serving certificate, nor a client
        # certificate with the wrong organization or with names.
        serving = await boot.create(join.csr_object(
            join.certificate_request(key, "n2", dns_names=["n2"]), join.SERVING_SIGNER,
            ["digital signature", "server auth"]))
        with_names = await boot.create(join.csr_object(
            join.certificate_request(key, "n2", dns_names=["n2"]), join.CLIENT_SIGNER,
            ["digital signature", "client auth"]))
        other_signer = await boot.create(join.csr_object(
            join.certificate_request(key, "n2"), "kubernetes.io/kube-apiserver-client",
            ["digital signature", "client auth"]))
        # A control: one that is approved, so the controller has seen them all.
        control = await boot.create(join.csr_object(
            join.certificate_request(key, "n2"), join.CLIENT_SIGNER,
            ["digital signature", "client auth"]))
        await _wait(boot, control["metadata"]["name"],
                    lambda c: (c.get("status") or {}).get("certificate"))
        await asyncio.sleep(0.3)
        for created in (serving, with_names, other_signer):
            csr = await boot.get(*CSR, created["metadata"]["name"])
            assert not (csr.get("status") or {}).get("conditions"), csr


async def test_denied_request_is_never_signed(cluster: Cluster) -> None:
    boot = await _bootstrap_client(cluster)
    key = ec.generate_private_key(ec.SECP256R1())
    async with boot:
        created = await boot.create(join.csr_object(
            join.certificate_request(key, "n3", dns_names=["n3"]), join.SERVING_SIGNER,
            ["digital signature", "server auth"]))
    name = created["metadata"]["name"]
    csr = await cluster.admin.get(*CSR, name)
    csr["status"] = {"conditions": [{"type": "Denied", "status": "True", "reason": "ByHand",
                                     "message": "no"}]}
    denied = await cluster.admin.update(csr, subresource="approval")
    assert denied["status"]["conditions"][0]["lastUpdateTime"]
    # Approved may not be added next to Denied, nor Denied removed.
    csr = {**denied, "status": {"conditions": [*denied["status"]["conditions"],
                                               {"type": "Approved", "status": "True"}]}}
    from kubevisor.client import InvalidError

    with pytest.raises(InvalidError):
        await cluster.admin.update(csr, subresource="approval")
    with pytest.raises(InvalidError):
        await cluster.admin.update({**denied, "status": {"conditions": []}},
                                   subresource="approval")
    await asyncio.sleep(0.5)
    assert not (await cluster.admin.get(*CSR, name)).get("status", {}).get("certificate")


async def test_foreign_client_certificate_refused(cluster: Cluster) -> None:
    """A certificate from another CA fails the TLS handshake."""
    import httpx

    from kubevisor.apiserver.pki import ensure_pki

    other = ensure_pki(cluster.tmp / "other-pki")
    context = ssl.create_default_context(cadata=cluster.ca_pem)
    context.load_cert_chain(other.cert_file, other.key_file)
    async with httpx.AsyncClient(base_url=cluster.url, verify=context) as http:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, ssl.SSLError)):
            await http.get("/api/v1/namespaces")


def test_decide_rules() -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    def csr(signer: str, usages: list[str], username: str, groups: list[str],
            **names: Any) -> dict[str, Any]:
        obj = join.csr_object(join.certificate_request(key, "n9", **names), signer, usages)
        obj["spec"].update(username=username, groups=groups)
        return obj

    client = ["digital signature", "client auth"]
    assert csrapproving.decide(csr(join.CLIENT_SIGNER, client, "system:bootstrap:abcdef",
                                   ["system:bootstrappers"])) == csrapproving.CLIENT_MESSAGE
    assert csrapproving.decide(csr(join.CLIENT_SIGNER, client, "system:node:n9",
                                   ["system:nodes"])) == csrapproving.SELF_CLIENT_MESSAGE
    assert csrapproving.decide(csr(join.CLIENT_SIGNER, client, "someone", [])) is None
    assert csrapproving.decide(csr(join.CLIENT_SIGNER, ["client auth", "server auth"],
                                   "system:bootstrap:abcdef", ["system:bootstrappers"])) is None
    serving = ["digital signature", "server auth", "key encipherment"]
    assert csrapproving.decide(csr(join.SERVING_SIGNER, serving, "system:node:n9",
                                   ["system:nodes"], ips=["10.0.0.9"])) == \
        csrapproving.SERVING_MESSAGE
    assert csrapproving.decide(csr(join.SERVING_SIGNER, serving, "system:node:n8",
                                   ["system:nodes"], ips=["10.0.0.9"])) is None
    assert csrapproving.decide(csr(join.SERVING_SIGNER, serving, "system:node:n9",
                                   ["system:nodes"])) is None  # no names
    bad = csr(join.CLIENT_SIGNER, client, "system:bootstrap:abcdef", ["system:bootstrappers"])
    bad["spec"]["request"] = base64.b64encode(b"garbage").decode()
    assert csrapproving.decide(bad) is None
    with pytest.raises(csrrules.BadRequest):
        csrrules.check(bad)
