"""Read a kubeconfig file into what the client needs to connect.

Only the fields kubevisor's own kubeconfig and common hand-written ones use:
the current (or a named) context's cluster ``server``, its CA
(``certificate-authority-data`` or ``certificate-authority``, relative
paths resolved against the kubeconfig's folder) or
``insecure-skip-tls-verify``, and the user's bearer token (``token`` or
``tokenFile``) or client certificate. Called by
:meth:`kubevisor.client.Client.from_kubeconfig`.
"""

from __future__ import annotations

import base64
import binascii
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubevisor.client.errors import KubeconfigError


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    server: str
    namespace: str = "default"
    token: str | None = None
    ca_pem: str | None = None
    insecure: bool = False
    client_cert_pem: str | None = None
    client_key_pem: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx takes as ``verify``: a context trusting the CA, or False."""
        if not self.server.startswith("https"):
            return True
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cadata=self.ca_pem) if self.ca_pem else (
                ssl.create_default_context()
            )
        if self.client_cert_pem and self.client_key_pem:
            # ssl can only load a certificate chain from files.
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
                cert.write_text(self.client_cert_pem)
                key.write_text(self.client_key_pem)
                ctx.load_cert_chain(cert, key)
        return ctx


def _named(entries: Any, name: str, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what)
            return body if isinstance(body, dict) else {}
    raise KubeconfigError(f'{what} "{name}" not found in kubeconfig')


def _data_or_file(section: dict[str, Any], key: str, base: Path) -> str | None:
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(data).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise KubeconfigError(f"{key}-data is not base64 PEM") from exc
    path = section.get(key)
    if path:
        try:
            return (base / path).read_text()
        except OSError as exc:
            raise KubeconfigError(f"cannot read {key} {path}: {exc}") from exc
    return None


def load_kubeconfig(path: Path | str, *, context: str | None = None) -> ConnectionConfig:
    """The connection settings of ``context`` (default: current-context)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot load kubeconfig {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping")
    base = path.parent
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeconfigError(f"kubeconfig {path} has no current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f'cluster "{ctx.get("cluster")}" has no server')
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = (base / user["tokenFile"]).read_text().strip()
        except OSError as exc:
            raise KubeconfigError(f"cannot read tokenFile: {exc}") from exc
    return ConnectionConfig(
        server=str(server).rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        token=token or None,
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        client_cert_pem=_data_or_file(user, "client-certificate", base),
        client_key_pem=_data_or_file(user, "client-key", base),
    )
