"""A real container registry on loopback for tests: Debian's ``docker-registry``
(github.com/distribution/distribution v2), optionally behind htpasswd auth.

:func:`running_registry` writes a ``config.yml`` (filesystem storage in the
given directory, HTTP on ``127.0.0.1:<free port>``, access log on), starts
``/usr/bin/docker-registry`` as a subprocess, waits until ``/v2/`` answers,
and stops it (SIGTERM, then SIGKILL) on exit. ``auth=("user", "pass")``
turns on htpasswd auth (bcrypt hashes made with the system's libcrypt, which
on Debian is libxcrypt and knows ``$2y$``; no htpasswd binary needed).

:func:`push` copies a built OCI layout (``tests/support/images.py``) into it
with ``skopeo copy --dest-tls-verify=false``. :meth:`Registry.requests`
parses the registry's access log, so a test can count what a client fetched.

Fixtures (session scope, one registry per xdist worker; import them into a
conftest.py): ``registry`` (no auth) and ``auth_registry`` (user
``kubevisor``, password ``s3cret``). Tests sharing one registry use their own
repository names.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

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


def _config(data_dir: Path, port: int, htpasswd: Path | None) -> str:
    auth = f"auth:\n  htpasswd:\n    realm: kubevisor-test\n    path: {htpasswd}\n" if htpasswd else ""
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {data_dir}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        + auth
    )


@contextlib.contextmanager
def running_registry(workdir: Path, *, auth: tuple[str, str] | None = None,
                     timeout: float = 20.0) -> Iterator[Registry]:  # fmt: skip
    """Start a registry keeping its data and log in ``workdir``; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    htpasswd = None
    if auth is not None:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(f"{auth[0]}:{bcrypt_hash(auth[1])}\n")
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(_config(data_dir, port, htpasswd))
    reg = Registry(host=f"127.0.0.1:{port}", data_dir=data_dir, log_path=workdir / "registry.log", auth=auth)  # fmt: skip
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push(image: BuiltImage | Path, registry: Registry, *, name: str, tag: str | None = None,
         src_tag: str | None = None) -> str:  # fmt: skip
    """Copy an OCI layout (a :class:`BuiltImage`, or a layout directory and
    ``src_tag``) to ``registry`` as ``name:tag``; returns the pushed reference
    (``127.0.0.1:PORT/name:tag``)."""
    if isinstance(image, BuiltImage):
        layout, src_tag = image.layout, src_tag or image.tag
    else:
        layout = image
    assert src_tag, "push() of a layout directory needs src_tag"
    ref = registry.ref(name, tag or src_tag)
    args = [SKOPEO, "copy", "--quiet", "--dest-tls-verify=false"]
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
