"""Real etcd for tests: one member or a three-member cluster on loopback.

Any test may use it: the store contract suite (tests/store) runs the etcd
backend against it, the end-to-end suites run ``kubevisor up --store
etcd://...`` against it. :func:`running_etcd` is a context manager that
starts ``/usr/bin/etcd`` on free loopback ports with its data in a given
directory, waits until every member reports healthy (a leader is elected),
and stops the members (SIGTERM, then SIGKILL) on exit. The pytest fixtures
``etcd_single`` and ``etcd_cluster`` (one per xdist worker, session scope)
yield an :class:`EtcdCluster`, which is the list of client URLs
(``http://127.0.0.1:PORT``) with a few helpers; import them into a
conftest.py with ``from tests.support.etcd import etcd_cluster, etcd_single``.
Tests sharing one cluster must use their own key prefix. Tests that stop
members must start their own cluster with :func:`running_etcd`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


class EtcdError(RuntimeError):
    """etcd did not start or did not become healthy; carries its log tail."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EtcdMember:
    """One etcd process; ``start()`` after ``stop()`` rejoins with its data."""

    def __init__(self, name: str, data_dir: Path, client_port: int, peer_port: int) -> None:
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.client_url = f"http://127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.log_path = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, initial_cluster: str, *, token: str, state: str = "new") -> None:
        args = [
            ETCD,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", token,
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--snapshot-count", "100000",
            # kube-apiserver takes bodies up to 3 MiB; etcd's default cap is 1.5 MiB
            "--max-request-bytes", str(8 * 1024 * 1024),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.client_url}/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("health") == "true"

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL with ``kill``), wait; idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class EtcdCluster(list[str]):
    """The client URLs of a running etcd (a list), plus its members."""

    def __init__(self, members: list[EtcdMember]) -> None:
        super().__init__(m.client_url for m in members)
        self.members = members
        self.token = f"kubevisor-test-{os.getpid()}-{members[0].peer_port}"

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def store_url(self) -> str:
        """The ``--store`` argument of ``kubevisor up``: ``etcd://HOST:PORT,...``."""
        return "etcd://" + ",".join(url.removeprefix("http://") for url in self)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = [m for m in self.members if m.proc is not None]
        while pending:
            for member in pending:
                if not member.alive():
                    raise EtcdError(f"etcd {member.name} exited:\n{member.log_tail()}")
            pending = [m for m in pending if not m.healthy()]
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {m.name}\n{m.log_tail()}" for m in pending)
                raise EtcdError(f"etcd not healthy after {timeout}s:\n{tails}")
            time.sleep(0.05)

    def start_member(self, index: int) -> None:
        """Restart a stopped member (it rejoins with its data dir)."""
        member = self.members[index]
        if not member.alive():
            member.start(self.initial_cluster, token=self.token, state="existing")
        self.wait_healthy()

    def stop_member(self, index: int, *, kill: bool = False) -> None:
        self.members[index].stop(kill=kill)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


@contextlib.contextmanager
def running_etcd(base_dir: Path, *, members: int = 1, attempts: int = 3) -> Iterator[EtcdCluster]:
    """Start ``members`` etcd processes with data under ``base_dir``; yield
    the cluster once healthy; on exit stop them and delete their data (the
    ``<member>.log`` files stay). Retries on port clashes."""
    assert members >= 1, "an etcd cluster needs at least one member"
    last: EtcdError | None = None
    for attempt in range(attempts):
        root = Path(base_dir) / f"etcd-{attempt}"
        root.mkdir(parents=True, exist_ok=True)
        cluster = EtcdCluster(
            [
                EtcdMember(f"m{i}", root / f"m{i}.data", _free_port(), _free_port())
                for i in range(members)
            ]
        )
        try:
            for member in cluster.members:
                member.start(cluster.initial_cluster, token=cluster.token)
            cluster.wait_healthy()
        except EtcdError as exc:
            cluster.stop()
            last = exc
            continue
        try:
            yield cluster
        finally:
            cluster.stop()
            for member in cluster.members:  # keep the logs, drop the data
                shutil.rmtree(member.data_dir, ignore_errors=True)
        return
    raise EtcdError(f"etcd did not start in {attempts} attempts") from last


@pytest.fixture(scope="session")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member for this test session (per xdist worker)."""
    with running_etcd(tmp_path_factory.mktemp("etcd-single"), members=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A three-member etcd cluster for this test session (per xdist worker)."""
    with running_etcd(tmp_path_factory.mktemp("etcd-cluster"), members=3) as cluster:
        yield cluster
