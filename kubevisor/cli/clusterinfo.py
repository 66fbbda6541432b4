"""The ``cluster-info`` ConfigMap in ``kube-public``: how a joining host
learns the server's URL and CA before it has any credentials (kubeadm's
"token discovery").

``kubevisor up`` publishes it (:func:`publish_cluster_info`): a kubeconfig
with one cluster (server URL and CA, no user). ``kubevisor token create``
adds a detached JWS of that kubeconfig per bootstrap token
(``jws-kubeconfig-<token-id>``, HS256 keyed by the token, as kubeadm's
bootstrap signer does), so a host holding the token can tell the real
server from an impostor. ``kubevisor join`` fetches it anonymously over
unverified TLS (:func:`fetch_cluster_info`) and then trusts the CA only if
it matches ``--ca-cert-hash`` (:func:`ca_cert_hash`, kubeadm's
``sha256:<hex of the SubjectPublicKeyInfo digest>``) or, without a hash,
if the token's signature verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from kubevisor.apiserver.server import ServedURL

NAMESPACE = "kube-public"
NAME = "cluster-info"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{NAME}"
JWS_PREFIX = "jws-kubeconfig-"


class DiscoveryError(RuntimeError):
    """cluster-info could not be fetched, read or trusted."""


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    server: str
    ca_pem: bytes
    kubeconfig: str  # the published text, which the signatures cover
    signatures: dict[str, str]  # token id -> detached JWS


def ca_cert_hash(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the CA certificate's SubjectPublicKeyInfo (DER)."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def cluster_info_kubeconfig(server_url: str, ca_pem: bytes) -> str:
    """The kubeconfig text published in cluster-info: a cluster, no user."""
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "", "cluster": {
            "server": server_url,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "contexts": [], "users": [], "current-context": "", "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def cluster_info_configmap(server_url: str, ca_pem: bytes) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "data": {"kubeconfig": cluster_info_kubeconfig(server_url, ca_pem)}}


def sign(kubeconfig: str, token: str) -> str:
    """A detached compact JWS of ``kubeconfig``, ``<header>..<signature>``:
    HS256 keyed by the token's secret, ``kid`` its id (kubeadm's form)."""
    token_id, _, token_secret = token.partition(".")
    header = _b64(orjson.dumps({"alg": "HS256", "kid": token_id}))
    payload = _b64(kubeconfig.encode())
    mac = hmac.new(token_secret.encode(), f"{header}.{payload}".encode(),
                   hashlib.sha256).digest()
    return f"{header}..{_b64(mac)}"


def verify_signature(kubeconfig: str, detached: str, token: str) -> bool:
    """Is ``detached`` an HS256 signature of ``kubeconfig`` by ``token``?"""
    header, sep, given = detached.partition("..")
    try:
        alg = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"]
    except (ValueError, KeyError, TypeError):
        return False
    if not sep or alg != "HS256":
        return False
    payload = _b64(kubeconfig.encode())
    mac = hmac.new(token.partition(".")[2].encode(), f"{header}.{payload}".encode(),
                   hashlib.sha256).digest()
    return hmac.compare_digest(_b64(mac), given)


async def publish_cluster_info(server_url: str, ca_pem: bytes, *, admin: httpx.AsyncClient) -> None:
    """Create or refresh cluster-info (``admin``: an authenticated client on
    the server). Signatures already there stay while the kubeconfig is
    unchanged; a changed kubeconfig drops them (they would no longer verify)."""
    wanted = cluster_info_configmap(server_url, ca_pem)
    response = await admin.get(PATH)
    if response.status_code == 404:
        response = await admin.post(f"/api/v1/namespaces/{NAMESPACE}/configmaps", json=wanted)
        if response.status_code in (201, 409):
            return
    elif response.is_success:
        current = response.json()
        if (current.get("data") or {}).get("kubeconfig") == wanted["data"]["kubeconfig"]:
            return
        wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        response = await admin.put(PATH, json=wanted)
        if response.is_success:
            return
    raise DiscoveryError(f"cannot publish cluster-info: {response.status_code} "
                         f"{response.text[:200]}")


def advertised_url(host: str, port: int) -> str:
    """The URL other hosts reach a server listening on ``host:port`` by: a
    wildcard listen address becomes this host's first non-loopback IPv4."""
    if host in ("", "0.0.0.0", "::"):
        from kubevisor.apiserver.pki import host_ipv4_addresses

        addresses = host_ipv4_addresses()
        host = addresses[0] if addresses else "127.0.0.1"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


async def publish_for(url: ServedURL, *, listen_host: str) -> None:
    """:func:`publish_cluster_info` for a server started by
    :func:`kubevisor.apiserver.server.serve` (``kubevisor up`` calls this
    after creating the system namespaces)."""
    context = ssl.create_default_context(cadata=url.credentials.ca_pem.decode())
    async with httpx.AsyncClient(base_url=str(url), verify=context, headers=url.headers,
                                 timeout=30) as admin:
        await publish_cluster_info(advertised_url(listen_host, url.port), url.credentials.ca_pem,
                                   admin=admin)


async def fetch_cluster_info(server: str, *, timeout: float = 10.0) -> ClusterInfo:
    """GET cluster-info without credentials and without checking the
    server's certificate (nothing to check it with yet): the caller must
    verify the CA before trusting it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with httpx.AsyncClient(base_url=server, verify=context, timeout=timeout) as http:
            response = await http.get(PATH)
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"cannot reach {server}: {exc}") from exc
    if response.status_code == 404:
        raise DiscoveryError(f"{server} publishes no cluster-info ({NAMESPACE}/{NAME})")
    if not response.is_success:
        raise DiscoveryError(f"{server}: cluster-info answered {response.status_code}")
    data = (response.json().get("data") or {})
    text = data.get("kubeconfig") or ""
    try:
        cluster = yaml.safe_load(text)["clusters"][0]["cluster"]
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        x509.load_pem_x509_certificate(ca_pem)
        url = str(cluster["server"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise DiscoveryError(f"{server}: cluster-info holds no usable kubeconfig") from exc
    signatures = {k[len(JWS_PREFIX):]: v for k, v in data.items() if k.startswith(JWS_PREFIX)}
    return ClusterInfo(server=url, ca_pem=ca_pem, kubeconfig=text, signatures=signatures)


def trusted_ca(info: ClusterInfo, *, token: str, ca_cert_hashes: list[str]) -> bytes:
    """The CA to trust, after the checks kubeadm's token discovery makes;
    :class:`DiscoveryError` saying why when it must not be trusted. With
    hashes, the CA must match one of them; with none, the token's signature
    of the kubeconfig must be present and valid."""
    token_id = token.partition(".")[0]
    if ca_cert_hashes:
        actual = ca_cert_hash(info.ca_pem)
        wanted = [h.strip().lower() for h in ca_cert_hashes]
        for h in wanted:
            if not h.startswith("sha256:") or len(h) != 71:
                raise DiscoveryError(f'--ca-cert-hash "{h}": expected "sha256:" and 64 hex digits')
        if actual not in wanted:
            raise DiscoveryError(
                f"the server's CA does not match --ca-cert-hash: its public key hash is "
                f"{actual}; refusing to trust it (wrong server, or a man in the middle)")
    signature = info.signatures.get(token_id)
    if signature is not None and not verify_signature(info.kubeconfig, signature, token):
        raise DiscoveryError(f"cluster-info's signature for token {token_id} does not verify: "
                             "the server does not know this token")
    if signature is None and not ca_cert_hashes:
        raise DiscoveryError(f"cluster-info has no signature for token {token_id} and no "
                             "--ca-cert-hash was given: cannot tell the server is genuine")
    return info.ca_pem


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
