"""A real container registry on loopback for tests: Debian's ``docker-registry``
(github.com/distribution/distribution v2), optionally behind htpasswd auth.

:func:`running_registry` writes a ``config.yml`` (filesystem storage in the
given directory, HTTP on ``127.0.0.1:<free port>``, access log on), starts
``/usr/bin/docker-registry`` as a subprocess, waits until ``/v2/`` answers,
and stops it (SIGTERM, then SIGKILL) on exit. ``auth=("user", "pass")``
turns on htpasswd auth (bcrypt hashes made with the system's libcrypt, which
on Debian is libxcrypt and knows ``$2y$``; no htpasswd binary needed).
``auth=..., token=True`` instead puts the registry behind token auth, as
Docker Hub is: a small token server (:class:`TokenServer`, in this process,
on loopback) answers ``GET /token?service=&scope=`` with an RS256 JWT whose
``x5c`` certificate the registry trusts; the right Basic credentials get the
actions asked for, anyone else a token with no access.

:func:`push` copies a built OCI layout (``tests/support/images.py``) into it
with ``skopeo copy --dest-tls-verify=false``. :meth:`Registry.requests`
parses the registry's access log, so a test can count what a client fetched.

Fixtures (session scope, one registry per xdist worker; import them into a
conftest.py): ``registry`` (no auth), ``auth_registry`` (htpasswd: user
``kubevisor``, password ``s3cret``) and ``token_registry`` (token auth, same
user). Tests sharing one registry use their own
repository names.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.support.images import SKOPEO, BuiltImage

DOCKER_REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"
AUTH_USER, AUTH_PASSWORD = "kubevisor", "s3cret"
_ACCESS_RE = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


class RegistryError(RuntimeError):
    """The registry did not start, or a push failed; carries the log tail."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bcrypt_hash(password: str) -> str:
    """A ``$2y$`` bcrypt hash (what the registry's htpasswd accepts), made by
    libcrypt's crypt_gensalt/crypt."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2y$", 5, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2y$"):
        raise RegistryError("libcrypt cannot make bcrypt hashes (need libxcrypt)")
    return str(hashed.decode())


@dataclass
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``."""

    host: str
    data_dir: Path
    log_path: Path
    auth: tuple[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    token_server: TokenServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, name: str, tag: str) -> str:
        """``127.0.0.1:PORT/name:tag``."""
        return f"{self.host}/{name}:{tag}"

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request served so far, from the access log."""
        text = self.log_path.read_text(errors="replace")
        return [(m, p, int(s)) for m, p, s in _ACCESS_RE.findall(text)]

    def blob_gets(self, name: str) -> list[str]:
        """Digests of the successful blob GETs of repository ``name`` so far."""
        prefix = f"/v2/{name}/blobs/"
        return [p.removeprefix(prefix) for m, p, s in self.requests()
                if m == "GET" and p.startswith(prefix) and s in (200, 307)]  # fmt: skip


# ------------------------------------------------------------- token auth

TOKEN_SERVICE = "kubevisor-test-registry"
TOKEN_ISSUER = "kubevisor-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A Docker-style token server on loopback (the distribution "token"
    auth scheme): ``GET /token`` with HTTP Basic credentials returns
    ``{"token": <JWT>}`` granting the scope asked for when the credentials
    are right, no access otherwise. ``issued`` counts tokens handed out."""

    def __init__(self, workdir: Path, auth: tuple[str, str]) -> None:
        self.auth = auth
        self.issued = 0
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TOKEN_ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .sign(self._key, hashes.SHA256()))  # fmt: skip
        self.cert_path = workdir / "token.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path != "/token":
                    self.send_error(404)
                    return
                query = parse_qs(url.query)
                body = json.dumps({"token": server.token(self.headers.get("Authorization", ""),
                                                         query.get("scope", []))}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def token(self, authorization: str, scopes: list[str]) -> str:
        expected = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        access = []
        if authorization == expected:
            for scope in scopes:
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": TOKEN_ISSUER, "sub": self.auth[0] if access else "", "aud": TOKEN_SERVICE,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}  # fmt: skip
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        self.issued += 1
        return f"{signing_input}.{_b64url(signature)}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _config(data_dir: Path, port: int, htpasswd: Path | None, token: TokenServer | None = None) -> str:
    auth = f"auth:\n  htpasswd:\n    realm: kubevisor-test\n    path: {htpasswd}\n" if htpasswd else ""
    if token is not None:
        auth = (f"auth:\n  token:\n    realm: {token.realm}\n    service: {TOKEN_SERVICE}\n"
                f"    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {token.cert_path}\n")  # fmt: skip
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data_dir}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        + auth
    )


@contextlib.contextmanager
def running_registry(workdir: Path, *, auth: tuple[str, str] | None = None, token: bool = False,
                     timeout: float = 20.0) -> Iterator[Registry]:  # fmt: skip
    """Start a registry keeping its data and log in ``workdir``; stop it on exit."""
    assert auth is not None or not token, "token auth needs credentials"
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    htpasswd = token_server = None
    if auth is not None and token:
        token_server = TokenServer(workdir, auth)
    elif auth is not None:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(f"{auth[0]}:{bcrypt_hash(auth[1])}\n")
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(_config(data_dir, port, htpasswd, token_server))
    reg = Registry(host=f"127.0.0.1:{port}", data_dir=data_dir, log_path=workdir / "registry.log",
                   auth=auth, token_server=token_server)  # fmt: skip
    with reg.log_path.open("ab") as log:
        reg.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(config)], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if reg.proc.poll() is not None:
                raise RegistryError(f"docker-registry exited with {reg.proc.returncode}:\n{reg.log_tail()}")  # fmt: skip
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{reg.url}/v2/", timeout=1.0).status_code in (200, 401):
                    break
            if time.monotonic() > deadline:
                raise RegistryError(f"docker-registry did not answer within {timeout}s:\n{reg.log_tail()}")  # fmt: skip
            time.sleep(0.05)
        yield reg
    finally:
        _stop(reg.proc)
        if token_server is not None:
            token_server.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push(image: BuiltImage | Path, registry: Registry, *, name: str, tag: str | None = None,
         src_tag: str | None = None, docker_format: bool = False, all_platforms: bool = False) -> str:  # fmt: skip
    """Copy an OCI layout (a :class:`BuiltImage`, or a layout directory and
    ``src_tag``) to ``registry`` as ``name:tag``; returns the pushed reference
    (``127.0.0.1:PORT/name:tag``). ``docker_format`` converts to Docker
    schema2 manifests (and manifest lists); ``all_platforms`` copies every
    entry of an index (``skopeo copy --all``)."""
    if isinstance(image, BuiltImage):
        layout, src_tag = image.layout, src_tag or image.tag
    else:
        layout = image
    assert src_tag, "push() of a layout directory needs src_tag"
    ref = registry.ref(name, tag or src_tag)
    args = [SKOPEO, "copy", "--quiet", "--dest-tls-verify=false"]
    if docker_format:
        args.append("--format=v2s2")
    if all_platforms:
        args.append("--all")
    if registry.auth:
        args.append(f"--dest-creds={registry.auth[0]}:{registry.auth[1]}")
    result = subprocess.run([*args, f"oci:{layout}:{src_tag}", f"docker://{ref}"],
                            capture_output=True, text=True, env={**os.environ, "HOME": str(registry.data_dir.parent)})  # fmt: skip
    if result.returncode != 0:
        raise RegistryError(f"skopeo copy to {ref} failed: {result.stderr.strip()}\n{registry.log_tail()}")  # fmt: skip
    return ref


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry without auth, shared by the session (one per xdist worker)."""
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry requiring user ``kubevisor``/``s3cret`` (htpasswd, HTTP Basic)."""
    with running_registry(tmp_path_factory.mktemp("auth-registry"), auth=(AUTH_USER, AUTH_PASSWORD)) as reg:  # fmt: skip
        yield reg


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry behind token auth (:class:`TokenServer`); user ``kubevisor``/``s3cret``."""
    with running_registry(tmp_path_factory.mktemp("token-registry"), auth=(AUTH_USER, AUTH_PASSWORD), token=True) as reg:  # fmt: skip
        yield reg
