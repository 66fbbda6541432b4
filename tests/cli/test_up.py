"""``kubevisor up`` as users run it: a subprocess on a free port with a tmp
data dir, probed over TLS with the CA from the kubeconfig it writes, with
the real kubectl, and stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.server import KubevisorServer, kubevisor_command, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> KubevisorServer:
    with running_server(tmp_path_factory.mktemp("up") / "data") as srv:
        yield srv  # type: ignore[misc]


def test_readyz_and_health_over_tls_verified_by_the_ca(server: KubevisorServer) -> None:
    with server.client() as http:
        for path in ("/readyz", "/livez", "/healthz"):
            response = http.get(path)
            assert (response.status_code, response.text.strip()) == (200, "ok"), path
        version = http.get("/version").json()
        assert version["gitVersion"].startswith("v1.32")


def test_requests_without_a_valid_token_get_401_status(server: KubevisorServer) -> None:
    with server.client(auth=False) as http:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            response = http.get("/api/v1/namespaces", headers=headers)
            assert response.status_code == 401
            body = response.json()
            assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)


def test_kubeconfig_works_with_kubectl(server: KubevisorServer) -> None:
    assert stat.S_IMODE(server.kubeconfig.stat().st_mode) == 0o600
    config = yaml.safe_load(server.kubeconfig.read_text())
    assert config["current-context"] == "kubevisor"
    assert config["clusters"][0]["cluster"]["server"] == server.url
    server.kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: up-demo\n")
    deadline = time.monotonic() + 10  # the system namespaces come just after ready
    while True:
        names = set(server.kubectl("get", "ns", "-o", "name").stdout.split())
        wanted = {"namespace/up-demo", "namespace/default", "namespace/kube-system",
                  "namespace/kube-public", "namespace/kube-node-lease"}
        if wanted <= names or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert wanted <= names
    server.kubectl("run", "web", "--image=nginx")  # into the kubeconfig's namespace, default
    assert server.kubectl("get", "pod", "web", "-o", "name").stdout.strip() == "pod/web"


def test_credentials_are_reused_on_restart(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        token, ca = server.token, server.ca_pem
        server.restart()
        assert (server.token, server.ca_pem) == (token, ca)
        with server.client() as http:
            assert http.get("/readyz").status_code == 200
        key = tmp_path / "data" / "pki" / "apiserver.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_sigterm_and_sigint_exit_0(tmp_path: Path) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        server = KubevisorServer(data_dir=tmp_path / "data")
        server.start()
        try:
            with server.client() as http:  # an open keep-alive connection must not hold the exit
                assert http.get("/readyz").status_code == 200
                assert server.proc is not None
                server.proc.send_signal(signum)
                assert server.proc.wait(timeout=15) == 0, server.log_tail()
        finally:
            server.kill()
        assert "ready" in server.log_tail(200)


def test_listening_on_all_interfaces_writes_a_loopback_kubeconfig(tmp_path: Path) -> None:
    server = KubevisorServer(data_dir=tmp_path / "data", extra_args=())
    port = server.port
    command = [*kubevisor_command(), "up", "--no-node", "--data-dir", str(server.data_dir),
               "--listen", f"0.0.0.0:{port}"]
    server.data_dir.mkdir(parents=True)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    server.proc = proc
    try:
        server.wait_ready(timeout=60)
        config = yaml.safe_load(server.kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
    finally:
        server.stop()
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nonsense"], "--listen must be HOST:PORT"),
        (["--store", "mysql://x"], "unknown store"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [*kubevisor_command(), "up", "--no-node", "--data-dir", str(tmp_path / "d"), *args],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_reported(tmp_path: Path, server: KubevisorServer) -> None:
    result = subprocess.run(
        [*kubevisor_command(), "up", "--no-node", "--data-dir", str(tmp_path / "d"),
         "--listen", f"127.0.0.1:{server.port}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = subprocess.run([*kubevisor_command(), "version"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.startswith("kubevisor ")
    assert "v1.32" in result.stdout


def _controller_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            if "kubevisor.cli.controllers" in Path(f"/proc/{child}/cmdline").read_text():
                found.append(int(child))
    return found


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_controller_process_ends_with_the_server(tmp_path: Path, how: str) -> None:
    server = KubevisorServer(data_dir=tmp_path / "data")
    server.start()
    try:
        assert server.proc is not None
        deadline = time.monotonic() + 10
        while not (children := _controller_children(server.proc.pid)):
            assert time.monotonic() < deadline, "no controller manager process"
            time.sleep(0.1)
        if how == "sigterm":
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=15) == 0, server.log_tail()
        else:  # kill -9 of the server alone: the child must not linger
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=15)
        assert all(_gone(child) for child in children)
    finally:
        server.kill()
