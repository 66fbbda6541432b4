"""What a CertificateSigningRequest for one of kube's node signers must look
like, and reading one: pure functions shared by the approver
(:mod:`.csrapproving`) and the signer (:mod:`.csrsigning`).

Signers (kube's well-known names):

* ``kubernetes.io/kube-apiserver-client-kubelet``: a node's client
  identity. Subject ``O=system:nodes, CN=system:node:<name>``, no subject
  alternative names, usages digital signature + client auth (key
  encipherment allowed).
* ``kubernetes.io/kubelet-serving``: a node's serving certificate. Same
  subject, at least one DNS name or IP address and no e-mail or URI,
  usages digital signature + server auth (key encipherment allowed).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

JSON = dict[str, Any]

CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
BOOTSTRAPPERS = "system:bootstrappers"

_CLIENT_USAGES = ({"digital signature", "client auth"}, {"key encipherment"})
_SERVING_USAGES = ({"digital signature", "server auth"}, {"key encipherment"})


class BadRequest(ValueError):
    """The CSR does not meet its signer's rules; the message says which."""


@dataclass(frozen=True, slots=True)
class Parsed:
    request: x509.CertificateSigningRequest
    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    other_sans: int  # e-mail addresses, URIs and other kinds


def condition(csr: JSON, kind: str) -> JSON | None:
    for cond in (csr.get("status") or {}).get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == kind and \
                cond.get("status", "True") == "True":
            return cond
    return None


def is_approved(csr: JSON) -> bool:
    return condition(csr, "Approved") is not None and not is_denied_or_failed(csr)


def is_denied_or_failed(csr: JSON) -> bool:
    return condition(csr, "Denied") is not None or condition(csr, "Failed") is not None


def parse(csr: JSON) -> Parsed:
    """The PKCS#10 request in ``spec.request`` (base64 of PEM), checked for
    a valid self-signature; :class:`BadRequest` otherwise."""
    try:
        pem = base64.b64decode((csr.get("spec") or {}).get("request") or "", validate=True)
        request = x509.load_pem_x509_csr(pem)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("spec.request is not a PEM certificate request") from exc
    if not request.is_signature_valid:
        raise BadRequest("the certificate request's signature is invalid")
    subject = request.subject
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = tuple(str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    other = 0
    try:
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        dns = tuple(sans.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
        other = len(list(sans)) - len(dns) - len(ips)
    return Parsed(request=request, common_name=names[0] if names else "", organizations=orgs,
                  dns_names=dns, ip_addresses=ips, other_sans=other)


def check(csr: JSON) -> Parsed:
    """The parsed request if it meets the rules of its (node) signer;
    :class:`BadRequest` saying why not."""
    signer = (csr.get("spec") or {}).get("signerName")
    if signer not in (CLIENT_KUBELET, KUBELET_SERVING):
        raise BadRequest(f"signer {signer!r} is not one of kubevisor's node signers")
    parsed = parse(csr)
    if parsed.organizations != (NODES_GROUP,):
        raise BadRequest(f'subject organization must be exactly ["{NODES_GROUP}"]')
    if not parsed.common_name.startswith(NODE_PREFIX) or parsed.common_name == NODE_PREFIX:
        raise BadRequest(f'subject common name must start with "{NODE_PREFIX}"')
    usages = set((csr.get("spec") or {}).get("usages") or ())
    required, allowed = _CLIENT_USAGES if signer == CLIENT_KUBELET else _SERVING_USAGES
    if not required <= usages or not usages <= required | allowed:
        raise BadRequest(f"usages must be {sorted(required)} (optionally key encipherment)")
    if signer == CLIENT_KUBELET:
        if parsed.dns_names or parsed.ip_addresses or parsed.other_sans:
            raise BadRequest("a node client certificate has no subject alternative names")
    else:
        if not (parsed.dns_names or parsed.ip_addresses):
            raise BadRequest("a node serving certificate needs a DNS name or an IP address")
        if parsed.other_sans:
            raise BadRequest("a node serving certificate has no e-mail or URI names")
    return parsed
