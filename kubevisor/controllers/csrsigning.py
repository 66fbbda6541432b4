"""The CSR signer: issues certificates for approved node requests with the
cluster CA, as kube-controller-manager's csrsigning controller does for
``kubernetes.io/kube-apiserver-client-kubelet`` and
``kubernetes.io/kubelet-serving``.

An approved request (not denied or failed) without a certificate is
checked against its signer's rules (:mod:`.csrrules`) once more; if it
fails them, it gets the condition ``Failed`` (reason
``SignerValidationFailure``), else ``status.certificate`` is set to a PEM
certificate signed by the CA: the request's subject and names, key usages
from ``spec.usages``, valid from five minutes ago for
``spec.expirationSeconds`` (at least 10 minutes) or one year, whichever is
shorter. Runs only where the CA key is (the manager is given its path).
Pure part: :func:`issue`; the shell: :class:`CSRSigningController`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubevisor.client import Client, ConflictError, NotFoundError, SharedInformers
from kubevisor.controllers import csrrules
from kubevisor.controllers.csrapproving import API_VERSION, KIND
from kubevisor.controllers.csrrules import BadRequest
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.runtime import Controller, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
MAX_DURATION = dt.timedelta(days=365)
MIN_DURATION = dt.timedelta(seconds=600)
BACKDATE = dt.timedelta(minutes=5)
SIGNERS = (csrrules.CLIENT_KUBELET, csrrules.KUBELET_SERVING)
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def load_ca(cert_file: Path, key_file: Path) -> tuple[x509.Certificate, SigningKey]:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey), \
        f"{key_file}: an EC or RSA key is needed to sign"
    return cert, key


def issue(csr: JSON, ca_cert: x509.Certificate, ca_key: SigningKey, *,
          now: dt.datetime) -> x509.Certificate:
    """The certificate for an approved ``csr``; :class:`BadRequest` if it
    does not meet its signer's rules."""
    parsed = csrrules.check(csr)
    spec = csr.get("spec") or {}
    usages = set(spec.get("usages") or ())
    duration = MAX_DURATION
    if spec.get("expirationSeconds"):
        duration = max(MIN_DURATION, min(MAX_DURATION,
                                         dt.timedelta(seconds=int(spec["expirationSeconds"]))))
    not_after = min(now + duration, ca_cert.not_valid_after_utc)
    ext_usages = [oid for name, oid in (("client auth", ExtendedKeyUsageOID.CLIENT_AUTH),
                                        ("server auth", ExtendedKeyUsageOID.SERVER_AUTH))
                  if name in usages]
    builder = (
        x509.CertificateBuilder()
        .subject_name(parsed.request.subject)
        .issuer_name(ca_cert.subject)
        .public_key(parsed.request.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature="digital signature" in usages, content_commitment=False,
            key_encipherment="key encipherment" in usages, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(ext_usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in parsed.dns_names]
    names.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in parsed.ip_addresses)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


class CSRSigningController:
    def __init__(self, client: Client, *, ca_cert_file: Path, ca_key_file: Path,
                 clock: Callable[[], dt.datetime] = utcnow,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self.ca_cert, self.ca_key = load_ca(ca_cert_file, ca_key_file)
        self._clock = clock
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.csrs = self.informers.get(API_VERSION, KIND)
        self.csrs.add_handler(self._on_csr)
        self.controller: Controller[Key] = Controller("csrsigning", self.reconcile)

    def _on_csr(self, etype: str, csr: JSON, old: JSON | None) -> None:
        if etype != "DELETED" and _wants_certificate(csr):
            self.controller.queue.add(("", csr["metadata"]["name"]))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="csrsigning-informers")
            await self.informers.wait_synced(self.csrs)
            group.create_task(self.controller.run(), name="csrsigning-controller")

    async def reconcile(self, key: Key) -> None:
        csr = self.csrs.get(key[1])
        if csr is None or not _wants_certificate(csr):
            return
        body = copy.deepcopy(csr)
        status = body.setdefault("status", {})
        try:
            cert = issue(csr, self.ca_cert, self.ca_key, now=self._clock())
        except BadRequest as exc:
            status["conditions"] = [*(status.get("conditions") or []), {
                "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": str(exc)}]
        else:
            pem = cert.public_bytes(serialization.Encoding.PEM)
            status["certificate"] = base64.b64encode(pem).decode()
        try:
            await self.client.update_status(body)
        except (ConflictError, NotFoundError) as exc:
            raise TemporaryError(f"csr {key[1]}: {exc}", delay=0.2) from exc


def _wants_certificate(csr: JSON) -> bool:
    return ((csr.get("spec") or {}).get("signerName") in SIGNERS and csrrules.is_approved(csr)
            and not (csr.get("status") or {}).get("certificate"))
