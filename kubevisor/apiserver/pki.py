"""Credentials of one kubevisor control plane: a CA, the apiserver's serving
certificate, the admin bearer token, and the admin kubeconfig built from them.

``kubevisor up`` (and the in-process ``server.serve`` helper used by tests and
benchmarks) call :func:`ensure_pki` on every start. The first start creates
``<data-dir>/pki/{ca.crt,ca.key,apiserver.crt,apiserver.key,admin.token}``;
later starts reuse them, and only the serving certificate is re-issued when
the wanted subject alternative names changed, when it was not signed by this
CA, or when it nears expiry. Private keys and the token are written
atomically with mode 0600. Keys are EC P-256 (cheap handshakes; Go's
``crypto/tls`` in kubectl and Python's ``ssl`` both accept them).
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import ipaddress
import os
import secrets
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubevisor.apiserver.config import UserInfo

CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
ADMIN_USER = UserInfo(name="kubernetes-admin", groups=("system:masters", "system:authenticated"))
# Names the in-cluster service for the apiserver will answer to (kube-apiserver's defaults).
IN_CLUSTER_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_SIOCGIFADDR = 0x8915


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the credentials live, plus the two values clients need inline."""

    pki_dir: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    token: str
    ca_pem: bytes


def host_ipv4_addresses() -> list[str]:
    """The primary IPv4 address of every non-loopback interface that has one."""
    addresses: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # interface down or without IPv4
            address = socket.inet_ntoa(reply[20:24])
            if not ipaddress.IPv4Address(address).is_loopback and address not in addresses:
                addresses.append(address)
    return addresses


def default_sans() -> list[str]:
    """localhost, the loopback addresses, the in-cluster service names, this
    host's name and its non-loopback IPv4 addresses."""
    names = ["localhost", "127.0.0.1", "::1", *IN_CLUSTER_NAMES]
    hostname = socket.gethostname()
    if hostname:
        names.append(hostname)
    names.extend(host_ipv4_addresses())
    return _dedupe(names)


def ensure_pki(pki_dir: Path, *, extra_sans: Iterable[str] = ()) -> Credentials:
    """Create or reuse the CA, serving certificate and admin token in ``pki_dir``.

    ``extra_sans`` (host names or IP addresses) are added to :func:`default_sans`.
    On failure part way (disk full), files already written stay valid on
    their own: each is replaced atomically.
    """
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_file, ca_key_file = pki_dir / "ca.crt", pki_dir / "ca.key"
    cert_file, key_file = pki_dir / "apiserver.crt", pki_dir / "apiserver.key"
    token_file = pki_dir / "admin.token"

    if ca_file.exists() and ca_key_file.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey), f"{ca_key_file}: not an EC key"
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _issue_ca(ca_key)
        _write(ca_key_file, _key_pem(ca_key), mode=0o600)
        _write(ca_file, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)

    sans = _dedupe([*default_sans(), *extra_sans])
    if not _serving_cert_ok(cert_file, key_file, ca_cert, sans):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue_serving(key, ca_cert, ca_key, sans)
        _write(key_file, _key_pem(key), mode=0o600)
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)

    if token_file.exists() and token_file.read_text().strip():
        token = token_file.read_text().strip()
    else:
        token = secrets.token_urlsafe(32)
        _write(token_file, token.encode() + b"\n", mode=0o600)

    return Credentials(
        pki_dir=pki_dir,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        token=token,
        ca_pem=ca_file.read_bytes(),
    )


def certificate_sans(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for, as strings."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    dns = ext.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return [*dns, *ips]


def kubeconfig_dict(*, server_url: str, ca_pem: bytes, token: str, name: str = "kubevisor") -> dict[str, Any]:
    """An admin kubeconfig: one cluster, one user with the bearer token, one
    context named ``name`` that is the current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, *, server_url: str, ca_pem: bytes, token: str) -> Path:
    """Write the admin kubeconfig (mode 0600, it holds the token) and return its path."""
    data = kubeconfig_dict(server_url=server_url, ca_pem=ca_pem, token=token)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, yaml.safe_dump(data, sort_keys=False).encode(), mode=0o600)
    return path


def _issue_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubevisor-ca")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def ensure_node_credentials(pki_dir: Path, node_name: str, *,
                            sans: Iterable[str] = ()) -> tuple[Path, Path, str]:
    """A serving certificate for node ``node_name``'s agent (signed by the
    cluster CA made by :func:`ensure_pki`, for ``sans`` plus the defaults)
    and the token the apiserver presents to node agents: ``(cert, key, token)``.
    Reused while the names still match, like the apiserver's own."""
    ca_file, ca_key_file = pki_dir / "ca.crt", pki_dir / "ca.key"
    assert ca_file.exists() and ca_key_file.exists(), f"{pki_dir}: run ensure_pki first"
    ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey), f"{ca_key_file}: not an EC key"
    safe = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in node_name)
    cert_file, key_file = pki_dir / f"node-{safe}.crt", pki_dir / f"node-{safe}.key"
    names = _dedupe([node_name, *default_sans(), *sans])
    if not _serving_cert_ok(cert_file, key_file, ca_cert, names):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue_serving(key, ca_cert, ca_key, names, common_name=f"system:node:{node_name}")
        _write(key_file, _key_pem(key), mode=0o600)
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    token_file = pki_dir / "kubelet-client.token"
    if token_file.exists() and token_file.read_text().strip():
        token = token_file.read_text().strip()
    else:
        token = secrets.token_urlsafe(32)
        _write(token_file, token.encode() + b"\n", mode=0o600)
    return cert_file, key_file, token


def _issue_serving(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    sans: Sequence[str],
    *,
    common_name: str = "kube-apiserver",
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    general_names: list[x509.GeneralName] = []
    for san in sans:
        try:
            general_names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            general_names.append(x509.DNSName(san))
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVING_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _serving_cert_ok(
    cert_file: Path, key_file: Path, ca_cert: x509.Certificate, sans: Sequence[str]
) -> bool:
    """Is the existing serving certificate usable as is: present, issued by
    this CA, for the same key, with exactly these SANs, and not near expiry?"""
    if not (cert_file.exists() and key_file.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    if cert.public_key() != key.public_key():
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return False
    return set(certificate_sans(cert)) == {_normalise(s) for s in sans}


def _normalise(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


def _dedupe(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip()
        if name:
            seen.setdefault(_normalise(name), None)
    return list(seen)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` atomically; the file never exists with looser permissions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)
        file.write(data)
        file.flush()
        os.fsync(fd)
    os.replace(tmp, path)
