"""The control plane's credentials: CA, serving certificate, admin token, kubeconfig."""

from __future__ import annotations

import base64
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from kubevisor.apiserver.pki import (
    certificate_sans,
    default_sans,
    ensure_pki,
    host_ipv4_addresses,
    write_kubeconfig,
)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_chain_verifies_and_ca_is_a_ca(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki")
    ca, serving = _cert(creds.ca_file), _cert(creds.cert_file)
    serving.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not serving.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert creds.ca_pem == creds.ca_file.read_bytes()


def test_sans_cover_loopback_hostname_host_addresses_and_extras(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki", extra_sans=["api.example.test", "10.9.8.7"])
    sans = set(certificate_sans(_cert(creds.cert_file)))
    expected = {"localhost", "127.0.0.1", "::1", socket.gethostname(), "api.example.test",
                "10.9.8.7", "kubernetes.default.svc"}
    assert expected <= sans
    assert set(host_ipv4_addresses()) <= sans
    assert not any(ip.startswith("127.") for ip in host_ipv4_addresses())
    assert set(default_sans()) <= sans


def test_key_and_token_files_are_private(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki")
    for name in ("ca.key", "apiserver.key", "admin.token"):
        assert _mode(creds.pki_dir / name) == 0o600, name
    assert _mode(creds.pki_dir) == 0o700
    assert len(creds.token) >= 32
    assert (creds.pki_dir / "admin.token").read_text().strip() == creds.token
    assert not list(creds.pki_dir.glob(".*.tmp"))


def test_second_start_reuses_everything(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path / "pki")
    files = {p.name: p.read_bytes() for p in first.pki_dir.iterdir()}
    second = ensure_pki(tmp_path / "pki")
    assert second.token == first.token
    assert {p.name: p.read_bytes() for p in second.pki_dir.iterdir()} == files


def test_changed_sans_reissue_only_the_serving_certificate(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path / "pki")
    ca_before, key_before = first.ca_file.read_bytes(), (first.pki_dir / "ca.key").read_bytes()
    cert_before = first.cert_file.read_bytes()
    second = ensure_pki(tmp_path / "pki", extra_sans=["new.example.test"])
    assert second.cert_file.read_bytes() != cert_before
    assert "new.example.test" in certificate_sans(_cert(second.cert_file))
    assert second.ca_file.read_bytes() == ca_before
    assert (second.pki_dir / "ca.key").read_bytes() == key_before
    assert second.token == first.token
    _cert(second.cert_file).verify_directly_issued_by(_cert(second.ca_file))
    # the same SANs again: no new certificate
    third = ensure_pki(tmp_path / "pki", extra_sans=["new.example.test"])
    assert third.cert_file.read_bytes() == second.cert_file.read_bytes()


def test_serving_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki")
    other = ensure_pki(tmp_path / "other")
    creds.cert_file.write_bytes(other.cert_file.read_bytes())
    (creds.pki_dir / "apiserver.key").write_bytes((other.pki_dir / "apiserver.key").read_bytes())
    again = ensure_pki(tmp_path / "pki")
    _cert(again.cert_file).verify_directly_issued_by(_cert(again.ca_file))


def test_kubeconfig_is_what_kubectl_reads(tmp_path: Path) -> None:
    creds = ensure_pki(tmp_path / "pki")
    path = write_kubeconfig(tmp_path / "kubeconfig", server_url="https://127.0.0.1:6443",
                            ca_pem=creds.ca_pem, token=creds.token)
    assert _mode(path) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "kubevisor"
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == creds.ca_pem
    kubectl = Path("/usr/bin/kubectl")
    if not kubectl.exists():
        pytest.skip("kubectl is not installed")
    view = subprocess.run(
        [str(kubectl), "config", "view", "--raw", "--minify", "-o", "json", "--kubeconfig", str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    )
    seen = yaml.safe_load(view.stdout)
    assert seen["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert seen["users"][0]["user"]["token"] == creds.token
    assert seen["contexts"][0]["name"] == "kubevisor"
