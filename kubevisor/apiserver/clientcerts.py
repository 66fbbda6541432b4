"""X.509 client-certificate authentication, as kube-apiserver's
``--client-ca-file``: a client that presented a certificate the TLS
handshake verified against the cluster CA is the user named by the
certificate's subject Common Name, in the groups named by its
Organization attributes (``CN=system:node:n1, O=system:nodes`` is node
``n1``).

The server (:mod:`kubevisor.apiserver.server`) asks for, but does not
require, a client certificate, and puts a verified one into each request's
ASGI scope as the ``tls`` extension of the ASGI spec
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM, leaf first).
:func:`user_of_scope` is called by the app's authentication when no known
bearer token was sent.
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kubevisor.apiserver.config import UserInfo


def tls_extension(peer_der: bytes) -> dict[str, Any]:
    """The ASGI ``tls`` scope extension for a verified peer certificate."""
    cert = x509.load_der_x509_certificate(peer_der)
    pem = cert.public_bytes(Encoding.PEM).decode()
    return {"client_cert_chain": [pem], "client_cert_name": cert.subject.rfc4514_string(),
            "client_cert_error": None}


def user_of_scope(scope: dict[str, Any] | None) -> UserInfo | None:
    """The user of the request's verified client certificate, or None."""
    if not scope:
        return None
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls or tls.get("client_cert_error") is not None:
        return None
    chain = tls.get("client_cert_chain") or []
    return user_of_pem(chain[0]) if chain else None


@functools.lru_cache(maxsize=512)
def user_of_pem(pem: str) -> UserInfo | None:
    """CN -> user name, each O -> a group; None without a Common Name."""
    try:
        subject = x509.load_pem_x509_certificate(pem.encode()).subject
    except ValueError:
        return None
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not names or not names[0]:
        return None
    orgs = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    groups = (*dict.fromkeys(o for o in orgs if o), "system:authenticated")
    return UserInfo(name=names[0], groups=groups)
