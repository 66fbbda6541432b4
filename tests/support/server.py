"""A real ``kubevisor up`` in a subprocess, for the end-to-end suites.

The e2e tests (tests/e2e) drive the server the way users do: the real
``kubevisor`` command on a free loopback port with a tmp data dir, the real
``/usr/bin/kubectl`` pointed at the kubeconfig it writes, the official
``kubernetes`` client, raw HTTPS. :class:`KubevisorServer` starts it, waits
for ``/readyz``, stops it (SIGTERM, then SIGKILL), kills it with ``kill -9``
and restarts it on the same data dir. :func:`running_server` is the context
manager the fixtures in ``tests/conftest.py`` use; the store is ``sqlite``
or an ``etcd://`` URL (a real etcd from tests/support/etcd.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = "/usr/bin/kubectl"


class ServerError(RuntimeError):
    """The server did not start, did not stop, or died; carries its log tail."""


class KubectlError(AssertionError):
    """A kubectl run that was expected to succeed failed."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    """A name nobody else in this test run uses (namespaces, CRD groups...)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def kubevisor_command() -> list[str]:
    """The console script of the venv running the tests, else ``python -m``."""
    script = Path(sys.executable).parent / "kubevisor"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "kubevisor.cli.main"]


@dataclass
class KubevisorServer:
    """One ``kubevisor up --no-node`` process (with ``node``, its node agent
    too) and its data dir.

    ``start()`` may be called again after ``stop()`` or ``kill()``: the
    server comes back on the same data dir and port.
    """

    data_dir: Path
    store: str = "sqlite"
    port: int = field(default_factory=free_port)
    extra_args: Sequence[str] = ()
    #: Run the node agent too (no ``--no-node``; tests/support/nodeserver.py).
    node: bool = False
    #: Extra environment of the server process (and so of its children).
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _credentials: tuple[str, str, bytes] | None = field(default=None, repr=False)
    _ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    # -- paths and credentials -------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.kubectl-cache"

    def _kubeconfig_user_and_ca(self) -> tuple[str, bytes]:
        text = self.kubeconfig.read_text()
        if self._credentials is not None and self._credentials[0] == text:
            return self._credentials[1], self._credentials[2]
        config = yaml.safe_load(text)
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"])
        else:
            ca = Path(cluster["certificate-authority"]).read_bytes()
        self._credentials = (text, str(user["token"]), ca)
        self._ssl_context = None
        return str(user["token"]), ca

    @property
    def token(self) -> str:
        return self._kubeconfig_user_and_ca()[0]

    @property
    def ca_pem(self) -> bytes:
        return self._kubeconfig_user_and_ca()[1]

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server with the CA from the kubeconfig."""
        ca = self.ca_pem
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cadata=ca.decode())
        return self._ssl_context

    def client(self, *, timeout: float = 30.0, auth: bool = True) -> httpx.Client:
        """A sync HTTPS client for raw requests (bearer token unless ``auth=False``)."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx.Client(
            base_url=self.url, verify=self.ssl_context(), headers=headers, timeout=timeout
        )

    def async_client(self, *, timeout: float = 30.0, **kwargs: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(
            base_url=self.url,
            verify=self.ssl_context(),
            headers=headers,
            timeout=timeout,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- life cycle ------------------------------------------------------------

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, *, timeout: float = 60.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        command = [
            *kubevisor_command(),
            "up",
            *(() if self.node else ("--no-node",)),
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--store",
            self.store,
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        log.write(f"\n=== start #{self.starts + 1}: {' '.join(command)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir.parent,
            start_new_session=True,
            env=None if self.env is None else {**os.environ, **self.env},
        )
        log.close()
        self.starts += 1
        self.wait_ready(timeout=timeout)

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "not tried"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(
                    f"kubevisor up exited with {self.proc.returncode} before ready:\n"
                    f"{self.log_tail()}"
                )
            if self.kubeconfig.exists():
                try:
                    with self.client(timeout=2.0) as http:
                        response = http.get("/readyz")
                    if response.status_code == 200 and response.text.strip() == "ok":
                        return
                    last = f"{response.status_code} {response.text[:200]!r}"
                except (httpx.HTTPError, ssl.SSLError, OSError, KeyError, yaml.YAMLError) as exc:
                    last = repr(exc)
            time.sleep(0.1)
        self.kill()
        raise ServerError(f"not ready after {timeout}s (last: {last}):\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill(self) -> None:
        """``kill -9`` the server (and anything it started) without warning."""
        if self.proc is not None and self.proc.poll() is None:
            self._kill_group()
            self.proc.wait(timeout=10)

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def restart(self, *, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout=timeout)

    # -- kubectl ---------------------------------------------------------------

    def kubectl_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.cache_dir),
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.cache_dir / "cache"),
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this server; ``check`` raises on failure."""
        result = subprocess.run(
            [KUBECTL, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.kubectl_env(env),
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def kubectl_json(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """``kubectl <args> -o json``, parsed."""
        result = self.kubectl(*args, "-o", "json", timeout=timeout)
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def create_namespace(self, name: str) -> None:
        """``kubectl create -f`` of a Namespace manifest (JSON on the wire)."""
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.kubectl("create", "-f", "-", input=json.dumps(manifest))

    def create_configmap(
        self, name: str, namespace: str, data: Mapping[str, str] | None = None, *args: str
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl create -f`` of a ConfigMap manifest (JSON on the wire)."""
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": dict(data or {}),
        }
        return self.kubectl("create", "-f", "-", *args, input=json.dumps(manifest))

    def apply_yaml(self, manifest: str, *args: str) -> str:
        """``kubectl apply -f -`` of a manifest; returns stdout."""
        return self.kubectl("apply", "-f", "-", *args, input=manifest).stdout


@contextlib.contextmanager
def running_server(
    data_dir: Path, *, store: str = "sqlite", extra_args: Sequence[str] = ()
) -> Iterator[KubevisorServer]:
    """Start ``kubevisor up`` on a free port; stop it (SIGTERM, then SIGKILL) on exit."""
    last_error: ServerError | None = None
    for _attempt in range(3):  # a free port can be taken between probe and bind
        server = KubevisorServer(data_dir=data_dir, store=store, extra_args=extra_args)
        try:
            server.start()
        except ServerError as exc:
            last_error = exc
            if "address already in use" not in str(exc).lower():
                raise
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    assert last_error is not None
    raise last_error


@contextlib.contextmanager
def server_on_store(store: str, tmp: Path) -> Iterator[KubevisorServer]:
    """``kubevisor up`` on ``store`` = ``sqlite`` (data under ``tmp/data``) or
    ``etcd`` (a single-member etcd started under ``tmp/etcd`` for it)."""
    if store == "sqlite":
        with running_server(tmp / "data", store="sqlite") as server:
            yield server
        return
    assert store == "etcd", f"unknown store {store!r}"
    from tests.support.etcd import running_etcd  # the store engineer's helper

    with running_etcd(tmp / "etcd") as cluster:
        with running_server(tmp / "data", store=cluster.store_url) as server:
            yield server
