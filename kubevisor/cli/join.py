"""``kubevisor join --server URL --token T [--ca-cert-hash sha256:HEX]``:
make this host a node of an existing control plane, as ``kubeadm join``
and the kubelet's TLS bootstrap do, then run its node agent in the
foreground.

1. Discovery: fetch ``kube-public/cluster-info`` without credentials and
   trust its CA only if it matches ``--ca-cert-hash`` or carries the
   token's signature (:mod:`kubevisor.cli.clusterinfo`).
2. Client certificate: with the bootstrap token, post a
   CertificateSigningRequest for ``CN=system:node:<name>, O=system:nodes``
   (signer ``kubernetes.io/kube-apiserver-client-kubelet``) and wait until
   the controller manager approved and signed it; write the key and
   certificate under ``<data-dir>/pki/`` and ``<data-dir>/kubelet.kubeconfig``.
3. Serving certificate: as the node now, ask the same way (signer
   ``kubernetes.io/kubelet-serving``) for the agent's stream-server
   certificate, for the node's name and IP addresses.
4. Pod CIDR: register the Node (if the agent has not yet) and wait briefly
   for the node IPAM controller to give it ``spec.podCIDR``.
5. Become the node agent (``exec python -m kubevisor.cli.nodeagent`` with
   the node kubeconfig, pod CIDR and serving certificate), which runs
   until SIGINT/SIGTERM.

Steps 1-3 are skipped when valid credentials already exist in the data dir
(a restarted join). Called by :mod:`kubevisor.cli.main`; the steps are
functions tests call on their own.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubevisor.cli.clusterinfo import DiscoveryError, fetch_cluster_info, trusted_ca
from kubevisor.client import AlreadyExistsError, Client, ClientError, NotFoundError

log = logging.getLogger("kubevisor.join")

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
RENEW_BEFORE = dt.timedelta(days=30)
KUBECONFIG = "kubelet.kubeconfig"
CLIENT_CERT, CLIENT_KEY = "node-client.crt", "node-client.key"
SERVING_CERT, SERVING_KEY = "node-serving.crt", "node-serving.key"
STREAM_TOKEN = "kubelet-client.token"
#: Where ``kubevisor up`` publishes the token the apiserver presents to node agents.
STREAM_TOKEN_SECRET = ("kube-system", "kubevisor-kubelet-client")


class JoinError(RuntimeError):
    """Joining failed in a way the user can act on; the message says how."""


@dataclass(frozen=True, slots=True)
class JoinOptions:
    server: str
    token: str
    data_dir: Path
    node_name: str
    ca_cert_hashes: tuple[str, ...] = ()
    node_ip: str | None = None
    timeout: float = 120.0
    pod_cidr_wait: float = 30.0
    network_prefix: str | None = None  # host network names (tests, two agents on one host)
    cgroup_parent: str | None = None
    stream_port: int | None = None  # the agent's stream server (10250; 0 picks one)

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / KUBECONFIG


# -- pure pieces ---------------------------------------------------------------


def node_subject(node_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])


def certificate_request(key: ec.EllipticCurvePrivateKey, node_name: str, *,
                        dns_names: Sequence[str] = (), ips: Sequence[str] = ()) -> bytes:
    """A PEM PKCS#10 request for node ``node_name`` (names only for serving)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(node_subject(node_name))
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def csr_object(request_pem: bytes, signer: str, usages: Sequence[str]) -> dict[str, Any]:
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "node-csr-"},
            "spec": {"request": base64.b64encode(request_pem).decode(), "signerName": signer,
                     "usages": list(usages)}}


def node_kubeconfig(server: str, ca_file: Path, cert_file: Path, key_file: Path,
                    node_name: str) -> dict[str, Any]:
    """A kubeconfig authenticating as the node with its client certificate."""
    user = f"system:node:{node_name}"
    return {"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "default-cluster", "cluster": {
                "server": server, "certificate-authority": str(ca_file.resolve())}}],
            "users": [{"name": user, "user": {"client-certificate": str(cert_file.resolve()),
                                              "client-key": str(key_file.resolve())}}],
            "contexts": [{"name": "default-context", "context": {
                "cluster": "default-cluster", "user": user, "namespace": "default"}}],
            "current-context": "default-context", "preferences": {}}


def certificate_ok(cert_file: Path, key_file: Path, ca_file: Path, node_name: str, *,
                   now: dt.datetime | None = None) -> bool:
    """Is there a certificate for this node, for this key, by this CA, not
    near expiry?"""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    if cert.public_key() != key.public_key() or cert.subject != node_subject(node_name):
        return False
    return cert.not_valid_after_utc - (now or dt.datetime.now(dt.UTC)) > RENEW_BEFORE


# -- the steps -----------------------------------------------------------------


async def discover_ca(options: JoinOptions) -> bytes:
    """Step 1: the cluster CA, checked; written to ``<data-dir>/pki/ca.crt``."""
    info = await fetch_cluster_info(options.server)
    ca_pem = trusted_ca(info, token=options.token, ca_cert_hashes=list(options.ca_cert_hashes))
    options.pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(options.pki_dir / "ca.crt", ca_pem, mode=0o644)
    return ca_pem


async def request_certificate(client: Client, request_pem: bytes, signer: str,
                              usages: Sequence[str], *, timeout: float) -> bytes:
    """Post a CSR and wait for its certificate (PEM); JoinError when it is
    denied, fails or is not issued within ``timeout`` seconds."""
    created = await client.create(csr_object(request_pem, signer, usages))
    name = created["metadata"]["name"]
    log.info("certificate request %s (%s) created; waiting for approval", name, signer)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        csr = await client.get("certificates.k8s.io/v1", "CertificateSigningRequest", name)
        status = csr.get("status") or {}
        for cond in status.get("conditions") or ():
            if cond.get("type") in ("Denied", "Failed") and cond.get("status", "True") == "True":
                raise JoinError(f"certificate request {name} {cond['type'].lower()}: "
                                f"{cond.get('reason', '')} {cond.get('message', '')}".strip())
        if status.get("certificate"):
            return base64.b64decode(status["certificate"])
        if asyncio.get_running_loop().time() > deadline:
            raise JoinError(
                f"certificate request {name} was not approved and signed within {timeout:.0f}s: "
                "is the controller manager running where the cluster CA key is? "
                f"(kubectl certificate approve {name} approves it by hand)")
        await asyncio.sleep(0.2)


async def tls_bootstrap(options: JoinOptions) -> Path:
    """Steps 1-3; returns the node kubeconfig. Skips what is already valid."""
    pki, name = options.pki_dir, options.node_name
    ca_file = pki / "ca.crt"
    client_ok = certificate_ok(pki / CLIENT_CERT, pki / CLIENT_KEY, ca_file, name) and \
        options.kubeconfig.exists()
    if not client_ok:
        ca_pem = await discover_ca(options)
        key = ec.generate_private_key(ec.SECP256R1())
        async with Client(options.server, token=options.token,
                          verify=ssl.create_default_context(cadata=ca_pem.decode())) as client:
            try:
                cert = await request_certificate(
                    client, certificate_request(key, name), CLIENT_SIGNER,
                    ["digital signature", "client auth"], timeout=options.timeout)
            except ClientError as exc:
                code = getattr(exc, "code", 0)
                if code == 401:
                    raise JoinError("the server refused the token (unknown or expired): "
                                    "create one with kubevisor token create") from exc
                raise
        _write(pki / CLIENT_KEY, _key_pem(key), mode=0o600)
        _write(pki / CLIENT_CERT, cert, mode=0o644)
        doc = node_kubeconfig(options.server, ca_file, pki / CLIENT_CERT, pki / CLIENT_KEY, name)
        _write(options.kubeconfig, yaml.safe_dump(doc, sort_keys=False).encode(), mode=0o600)
        log.info("node client certificate for system:node:%s written to %s", name, pki)
    if not certificate_ok(pki / SERVING_CERT, pki / SERVING_KEY, ca_file, name):
        key = ec.generate_private_key(ec.SECP256R1())
        ips = [options.node_ip] if options.node_ip else _host_addresses()
        async with Client.from_kubeconfig(options.kubeconfig) as client:
            cert = await request_certificate(
                client, certificate_request(key, name, dns_names=[name], ips=ips),
                SERVING_SIGNER, ["digital signature", "server auth"], timeout=options.timeout)
        _write(pki / SERVING_KEY, _key_pem(key), mode=0o600)
        _write(pki / SERVING_CERT, cert, mode=0o644)
        log.info("node serving certificate for %s written to %s", ", ".join([name, *ips]), pki)
    return options.kubeconfig


async def wait_for_pod_cidr(kubeconfig: Path, node_name: str, *, timeout: float) -> str | None:
    """Step 4: register the Node (a bare one the agent completes) and wait
    up to ``timeout`` seconds for its ``spec.podCIDR``; None if none came."""
    async with Client.from_kubeconfig(kubeconfig) as client:
        try:
            await client.create({"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": node_name, "labels": {"kubernetes.io/hostname": node_name,
                                              "kubernetes.io/os": "linux"}}})
        except AlreadyExistsError:
            pass
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                node = await client.get("v1", "Node", node_name)
            except NotFoundError:
                node = {}
            cidr = (node.get("spec") or {}).get("podCIDR")
            if cidr or asyncio.get_running_loop().time() > deadline:
                return str(cidr) if cidr else None
            await asyncio.sleep(0.2)


def agent_argv(options: JoinOptions, *, pod_cidr: str | None) -> list[str]:
    """``python -m kubevisor.cli.nodeagent ...`` for this node: its
    kubeconfig and data dir, name, address, pod CIDR and serving
    certificate (step 5)."""
    pki = options.pki_dir.resolve()
    argv = [sys.executable, "-m", "kubevisor.cli.nodeagent",
            "--kubeconfig", str(options.kubeconfig.resolve()),
            "--data-dir", str(options.data_dir.resolve()), "--node-name", options.node_name,
            "--stream-cert", str(pki / SERVING_CERT), "--stream-key", str(pki / SERVING_KEY)]
    if (pki / STREAM_TOKEN).exists():
        argv += ["--stream-token-file", str(pki / STREAM_TOKEN)]
    for flag, value in (("--node-ip", options.node_ip), ("--pod-cidr", pod_cidr),
                        ("--network-prefix", options.network_prefix),
                        ("--cgroup-parent", options.cgroup_parent),
                        ("--stream-port", options.stream_port)):
        if value is not None and value != "":
            argv += [flag, str(value)]
    return argv


async def fetch_stream_token(options: JoinOptions) -> bool:
    """Write the token the apiserver presents to node agents (published by
    ``kubevisor up`` in a kube-system Secret) to ``pki/kubelet-client.token``,
    so the agent's stream server serves kubectl logs/exec/port-forward;
    False (and a warning) when the server publishes none."""
    namespace, name = STREAM_TOKEN_SECRET
    async with Client.from_kubeconfig(options.kubeconfig) as client:
        try:
            secret = await client.get("v1", "Secret", name, namespace=namespace)
        except NotFoundError:
            log.warning("the server publishes no %s/%s Secret: kubectl logs/exec/port-forward "
                        "will not reach pods on this node", namespace, name)
            return False
    token = base64.b64decode((secret.get("data") or {}).get("token") or "").decode().strip()
    if not token:
        return False
    _write(options.pki_dir / STREAM_TOKEN, token.encode() + b"\n", mode=0o600)
    return True


async def prepare(options: JoinOptions) -> list[str]:
    """Steps 1-4; the node agent's command line."""
    kubeconfig = await tls_bootstrap(options)
    await fetch_stream_token(options)
    pod_cidr = await wait_for_pod_cidr(kubeconfig, options.node_name,
                                       timeout=options.pod_cidr_wait)
    if pod_cidr is None:
        log.warning("node %s got no spec.podCIDR within %.0fs (is node IPAM enabled?); "
                    "the agent picks its default", options.node_name, options.pod_cidr_wait)
    else:
        log.info("node %s: pod CIDR %s", options.node_name, pod_cidr)
    log.info("joined %s as node %s; running the node agent", options.server, options.node_name)
    return agent_argv(options, pod_cidr=pod_cidr)


def join_command(
    server: Annotated[str, typer.Option("--server", help="https://HOST:PORT of the API server.")],
    token: Annotated[str, typer.Option("--token", help="Bootstrap token <id>.<secret> "
                                       "(kubevisor token create).")],
    ca_cert_hash: Annotated[list[str] | None, typer.Option(
        "--ca-cert-hash", help="sha256:<hex> of the cluster CA's public key (repeatable).")] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="This node's state and "
                                           "credentials.")] = Path(".kubevisor"),
    node_name: Annotated[str | None, typer.Option(
        "--node-name", help="This host's Node name (default: host name).")] = None,
    node_ip: Annotated[str | None, typer.Option("--node-ip", help="This host's address.")] = None,
    network_prefix: Annotated[str | None, typer.Option(
        "--network-prefix", hidden=True, help="Prefix of the host network names (tests).")] = None,
    cgroup_parent: Annotated[str | None, typer.Option(
        "--cgroup-parent", hidden=True, help="Cgroup of the pods (tests).")] = None,
    stream_port: Annotated[int | None, typer.Option(
        "--stream-port", hidden=True, help="Port of the agent's stream server (10250; 0 picks one).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each certificate.")] = 120.0,
) -> None:
    """Join this host to a cluster and run its node agent in the foreground."""
    from kubevisor.apiserver.server import run_until_signalled

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    name = (node_name or socket.gethostname()).lower()
    if not server.startswith("https://"):
        typer.echo("error: --server must be an https:// URL", err=True)
        raise typer.Exit(1)
    options = JoinOptions(server=server.rstrip("/"), token=token.strip(), data_dir=data_dir,
                          node_name=name, ca_cert_hashes=tuple(ca_cert_hash or ()),
                          node_ip=node_ip, timeout=timeout, network_prefix=network_prefix,
                          cgroup_parent=cgroup_parent, stream_port=stream_port)
    async def until_prepared(stop: asyncio.Event) -> list[str] | None:
        task = asyncio.create_task(prepare(options))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():  # SIGINT/SIGTERM before the agent started
            task.cancel()
            return None
        return task.result()

    try:
        argv = run_until_signalled(until_prepared)
    except (DiscoveryError, JoinError, ClientError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if argv is None:
        raise typer.Exit(1)
    sys.stderr.flush()
    os.execv(argv[0], argv)  # the agent takes over this process (signals, exit status)


def _host_addresses() -> list[str]:
    from kubevisor.apiserver.pki import host_ipv4_addresses

    return host_ipv4_addresses() or ["127.0.0.1"]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` atomically; never readable with looser permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)
        file.write(data)
        file.flush()
        os.fsync(fd)
    os.replace(tmp, path)
