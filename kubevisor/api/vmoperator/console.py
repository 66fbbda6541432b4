"""The console ticket of a VirtualMachineWebConsoleRequest: what the
controller, the apiserver's relay and the CLI agree on (pure functions).

Upstream's controller asks vSphere for a WebMKS ticket and answers with a
``wss://`` URL encrypted with the request's ``spec.publicKey`` (RSA-OAEP,
SHA-512 for both the digest and MGF1, base64). kubevisor keeps the cipher
but encrypts the ticket alone: a random 43-character token (a URL would
not fit the 126 bytes RSA-2048 takes under OAEP-SHA-512). The URL is
derived from the request: :func:`console_path` on ``status.proxyAddr``,
with the ticket in the query (``?ticket=``).

The request keeps only a digest of the ticket, in the annotation
:data:`TICKET_ANNOTATION`, bound to the request's and the VM's uids (a
digest copied to another request, or a request re-pointed at another VM,
opens nothing). Used by ``kubevisor.controllers.vmconsole`` (mints),
``kubevisor.apiserver.vmconsole`` (verifies) and ``kubevisor.cli.console``
(decrypts).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from urllib.parse import quote

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GROUP = "vmoperator.vmware.com"
VERSION = "v1alpha6"
PLURAL = "virtualmachinewebconsolerequests"
KIND = "VirtualMachineWebConsoleRequest"
#: The subresource-like path segment the apiserver serves the console on.
SUBRESOURCE = "console"
#: Hex SHA-256 of ``<request uid>/<vm uid>/<ticket>``.
TICKET_ANNOTATION = "vmoperator.kubevisor.io/console-ticket-sha256"
#: Upstream's label naming the request's own uid (kept for compatibility).
UUID_LABEL = "vmoperator.vmware.com/webconsolerequest-uuid"
#: How long a ticket opens the console (upstream: two minutes).
LIFETIME_SECONDS = 120
_MIN_KEY_BITS = 2048


class PublicKeyError(ValueError):
    """``spec.publicKey`` is not a usable RSA public key (message says why)."""


def new_ticket() -> str:
    return secrets.token_urlsafe(32)


def ticket_digest(request_uid: str, vm_uid: str, ticket: str) -> str:
    return hashlib.sha256(f"{request_uid}/{vm_uid}/{ticket}".encode()).hexdigest()


def ticket_matches(expected_digest: str, request_uid: str, vm_uid: str, ticket: str) -> bool:
    """Constant-time check of ``ticket`` against the stored digest."""
    if not expected_digest or not ticket:
        return False
    return hmac.compare_digest(expected_digest.encode(),
                               ticket_digest(request_uid, vm_uid, ticket).encode())


def console_path(namespace: str, name: str) -> str:
    """The apiserver path of a request's console WebSocket."""
    return (f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{PLURAL}/"
            f"{quote(name, safe='')}/{SUBRESOURCE}")


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM: X.509 SubjectPublicKeyInfo, or PKCS#1
    (under a ``PUBLIC KEY`` header too, as upstream's Go code reads it)."""
    data = pem.strip().encode()
    if not data.startswith(b"-----BEGIN"):
        raise PublicKeyError("spec.publicKey is not PEM: it must start with "
                        "-----BEGIN PUBLIC KEY-----")
    key: object = None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        body = b"".join(line for line in data.splitlines() if not line.startswith(b"-----"))
        try:
            der = base64.b64decode(body, validate=False)
            rewrapped = (b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der)
                         + b"-----END RSA PUBLIC KEY-----\n")
            key = serialization.load_pem_public_key(rewrapped)
        except (ValueError, UnsupportedAlgorithm, binascii.Error) as exc:
            raise PublicKeyError("spec.publicKey is PEM but neither an X.509 (SubjectPublicKeyInfo) "
                                 "nor a PKCS#1 RSA public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise PublicKeyError(f"spec.publicKey is a {type(key).__name__.removeprefix('_')}, "
                        "not an RSA key")
    if key.key_size < _MIN_KEY_BITS:
        raise PublicKeyError(f"spec.publicKey is a {key.key_size}-bit RSA key; "
                        f"at least {_MIN_KEY_BITS} bits are needed")
    return key


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA512()), algorithm=hashes.SHA512(),
                        label=None)


def encrypt(public_key_pem: str, plaintext: str) -> str:
    """``plaintext`` encrypted for ``public_key_pem``, base64 (upstream's scheme)."""
    key = load_public_key(public_key_pem)
    return base64.b64encode(key.encrypt(plaintext.encode(), _oaep())).decode()


def decrypt(private_key: rsa.RSAPrivateKey, response: str) -> str:
    """The plaintext of a ``status.response``; ValueError if it is not ours."""
    try:
        return private_key.decrypt(base64.b64decode(response, validate=True), _oaep()).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"status.response is not base64 of a ticket: {exc}") from exc


def public_key_pem(private_key: rsa.RSAPrivateKey) -> str:
    """The X.509 PEM of ``private_key``'s public half, for spec.publicKey."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
