"""Loading kubeconfigs: the one `kubevisor up` writes, and hand-written ones."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import yaml

from kubevisor.apiserver.pki import ensure_pki, write_kubeconfig
from kubevisor.client import Client, KubeconfigError, load_kubeconfig


def test_reads_the_kubeconfig_kubevisor_writes(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki")
    path = write_kubeconfig(tmp_path / "kubeconfig", server_url="https://127.0.0.1:6443",
                            ca_pem=creds.ca_pem, token=creds.token)
    cfg = load_kubeconfig(path)
    assert cfg.server == "https://127.0.0.1:6443"
    assert cfg.token == creds.token
    assert cfg.ca_pem == creds.ca_pem.decode()
    assert cfg.namespace == "default"
    ctx = cfg.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert any(c["subject"] for c in ctx.get_ca_certs())


def test_named_context_ca_file_and_token_file(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki")
    (tmp_path / "token").write_text("s3cret\n")
    doc = {
        "current-context": "a",
        "clusters": [{"name": "c1", "cluster": {"server": "https://h:1/",
                                                "certificate-authority": "pki/ca.crt"}},
                     {"name": "c2", "cluster": {"server": "http://h:2",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c1", "user": "u"}},
                     {"name": "b", "context": {"cluster": "c2", "user": "u",
                                               "namespace": "team"}}],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    assert creds.ca_file == tmp_path / "pki" / "ca.crt"
    a = load_kubeconfig(path)
    assert a.server == "https://h:1" and a.token == "s3cret"
    assert a.ca_pem == creds.ca_file.read_text()
    b = load_kubeconfig(path, context="b")
    assert (b.server, b.namespace, b.insecure) == ("http://h:2", "team", True)


async def test_client_from_kubeconfig_uses_context_namespace(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki")
    path = write_kubeconfig(tmp_path / "kubeconfig", server_url="https://127.0.0.1:1",
                            ca_pem=creds.ca_pem, token=creds.token)
    async with Client.from_kubeconfig(path) as client:
        assert client.namespace == "default"
        assert client.server == "https://127.0.0.1:1"


@pytest.mark.parametrize("doc", [
    "[]",
    "clusters: []\n",
    "current-context: x\ncontexts: []\n",
    "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
    "clusters: [{name: c, cluster: {}}]\n",
])
def test_bad_kubeconfigs_raise_kubeconfig_error(tmp_path: Path, doc: str) -> None:
    path = tmp_path / "config"
    path.write_text(doc)
    with pytest.raises(KubeconfigError):
        load_kubeconfig(path)


def test_missing_file_raises_kubeconfig_error(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError):
        load_kubeconfig(tmp_path / "nope")
