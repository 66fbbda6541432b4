"""A real ``kubevisor up`` WITH its node agent, for the node acceptance suites.

tests/e2e/test_node_*.py run the whole system the way a user does: the
``kubevisor`` command (apiserver, controller manager, node agent running
real containers through runc/conmon on a bridge with the nft service
proxy), the real ``/usr/bin/kubectl``, images pulled from a real
``docker-registry`` on loopback (tests/support/registry.py).

:class:`NodeServer` is a :class:`~tests.support.server.KubevisorServer`
whose node keeps apart from every other agent on the host: names from a
random ``kvt<hex>`` prefix (bridge, netns, veths, nft tables, LB link,
cgroup parent), a free /24 pod range, its own node name, a stream server
on a free port and, if asked, a load-balancer pool of its own. It can
SIGKILL its agent and start it again by hand with the same argv.

:func:`running_node_server` starts it, waits for the Node to be Ready,
and on the way out (even on failure) deletes every workload and waits for
the pods to go, checks that no conmon/runc of its data dir is left, stops
the server and then removes whatever is left regardless (containers,
overlay mounts, the network via
:func:`kubevisor.runtime.network.remove_network`, cgroups). A leftover
found after the pods were deleted fails the fixture's teardown.

:func:`node_images` (session fixture) pushes ``busybox:1``, ``httpd:1`` and
``httpd:2`` (tests/support/images.py) to a session registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.server import KubevisorServer, ServerError

T = TypeVar("T")


def require_node() -> None:
    """Skip unless this host can run the node (root, the runtime packages, kubectl)."""
    if os.geteuid() != 0:
        pytest.skip("the node acceptance tests need root")
    for tool in ("/usr/bin/kubectl", "/usr/bin/docker-registry", "/usr/bin/conmon"):
        if not Path(tool).exists():
            pytest.skip(f"{tool} is not installed")


@dataclass(frozen=True)
class NodeImages:
    """References (``127.0.0.1:PORT/name:tag``) of the images pods pull."""

    busybox: str
    httpd_v1: str
    httpd_v2: str


@pytest.fixture(scope="session")
def node_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeImages]:
    """A session registry holding busybox:1, httpd:1 and httpd:2."""
    require_node()
    from tests.support.images import build, busybox_recipe, httpd_recipe
    from tests.support.registry import push, running_registry

    with running_registry(tmp_path_factory.mktemp("node-registry")) as reg:
        yield NodeImages(busybox=push(build(busybox_recipe()), reg, name="busybox", tag="1"),
                         httpd_v1=push(build(httpd_recipe("1")), reg, name="httpd", tag="1"),
                         httpd_v2=push(build(httpd_recipe("2")), reg, name="httpd", tag="2"))


def free_lb_pool() -> str:
    """A /29 of 172.31.0.0/16 (not the default pool's 172.31.255.0/24) that
    no address or route of this host overlaps."""
    import ipaddress

    taken = _host_networks()
    for _ in range(200):
        net = ipaddress.ip_network(f"172.31.{random.randrange(0, 255)}.{8 * random.randrange(32)}/29")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise ServerError("no free /29 for a load-balancer pool in 172.31.0.0/16")


def _host_networks() -> list[Any]:
    import ipaddress

    out: list[Any] = []
    for cmd in (["ip", "-j", "-4", "route", "show", "table", "all"], ["ip", "-j", "-4", "addr"]):
        result = subprocess.run(cmd, capture_output=True, check=False)
        with contextlib.suppress(ValueError):
            for entry in json.loads(result.stdout or b"[]"):
                nets = [entry.get("dst", "")] + [f"{a['local']}/{a['prefixlen']}"
                                                 for a in entry.get("addr_info", [])]
                for net in nets:
                    with contextlib.suppress(ValueError):
                        if net and net != "default":
                            out.append(ipaddress.ip_network(net, strict=False))
    return out


@dataclass
class NodeServer(KubevisorServer):
    """``kubevisor up`` with a node agent under test-specific names."""

    prefix: str = field(default_factory=lambda: f"kvt{secrets.token_hex(3)[:5]}")
    pod_cidr: str = ""
    node_name: str = ""
    lb_pool: str | None = None
    #: The agent started by :meth:`start_agent` (the server's own one is its child).
    hand_agent: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        from kubevisor.cli.benchpods import free_pod_cidr

        self.node = True
        self.pod_cidr = self.pod_cidr or free_pod_cidr(250)
        self.node_name = self.node_name or f"{self.prefix}-node"
        self.extra_args = [*self.extra_args, "--node-name", self.node_name,
                           "--node-network-prefix", self.prefix, "--pod-cidr", self.pod_cidr,
                           "--node-cgroup-parent", self.cgroup_parent, "--node-stream-port", "0"]
        env = dict(self.env or {})
        if self.lb_pool:
            env["KUBEVISOR_LOADBALANCER_POOL"] = self.lb_pool
        self.env = env

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.prefix}"

    @property
    def marker(self) -> bytes:
        """What the command line of every process of this node's containers holds."""
        return str(self.data_dir.resolve()).encode()

    def network_config(self) -> Any:
        from kubevisor.node.agent import network_config

        return network_config(self.data_dir.resolve(), pod_cidr=self.pod_cidr,
                              network_prefix=self.prefix)

    # -- the node --------------------------------------------------------------

    def wait_node_ready(self, *, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            result = self.kubectl("get", "node", self.node_name, "-o", "json", check=False)
            if result.returncode == 0:
                conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
                if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                    return
                last = json.dumps(conditions)
            else:
                last = result.stderr.strip()
            time.sleep(0.5)
        raise ServerError(f"node {self.node_name} not Ready after {timeout}s ({last}):\n"
                          f"{self.log_tail()}")

    def agent_pid(self) -> int | None:
        """The running node agent of this data dir (the server's child or ours)."""
        from kubevisor.cli.benchhost import all_processes

        for proc in all_processes().values():
            if b"kubevisor.cli.nodeagent" in proc.cmdline and self.marker in proc.cmdline:
                return proc.pid
        return None

    def kill_agent(self) -> list[str]:
        """SIGKILL the agent; returns its argv (read before the kill)."""
        pid = self.agent_pid()
        assert pid is not None, f"no node agent running:\n{self.log_tail()}"
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        os.kill(pid, signal.SIGKILL)
        if self.hand_agent is not None and self.hand_agent.pid == pid:
            self.hand_agent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # a zombie until the server reaps it
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        return argv

    def start_agent(self, argv: list[str]) -> int:
        """Start the agent by hand with ``argv`` (as read by :meth:`kill_agent`);
        it dies with this process instead of the server (``--parent-pid``)."""
        args = list(argv)
        if "--parent-pid" in args:
            args[args.index("--parent-pid") + 1] = str(os.getpid())
        with self.log_path.open("ab") as log:
            log.write(f"\n=== agent started by hand: {' '.join(args)}\n".encode())
            log.flush()
            self.hand_agent = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL)
        return self.hand_agent.pid

    def stop_agent(self) -> None:
        proc, self.hand_agent = self.hand_agent, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def runtime_processes(self) -> dict[str, list[int]]:
        """conmon and runc processes and containers of this node's data dir."""
        from kubevisor.cli.benchhost import all_processes, descendants

        procs = all_processes()
        conmon = sorted(p.pid for p in procs.values() if p.comm == "conmon" and self.marker in p.cmdline)
        runc = sorted(p.pid for p in procs.values()
                      if p.comm in ("runc", "crun") and self.marker in p.cmdline)
        qemu = sorted(p.pid for p in procs.values()
                      if p.comm.startswith("qemu-system") and self.marker in p.cmdline)
        return {"conmon": conmon, "runc": runc, "containers": sorted(descendants(procs, conmon)),
                "qemu": qemu}

    def container_pid(self, pod: str, comm: str) -> int:
        """The host pid of the process ``comm`` in pod ``pod`` (found by the
        pod's /etc/hostname, which the agent writes)."""
        from kubevisor.cli.benchhost import all_processes

        procs = all_processes()
        for pid in self.runtime_processes()["containers"]:
            if procs.get(pid) is None or procs[pid].comm != comm:
                continue
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/root/etc/hostname").read_text().strip() == pod:
                    return pid
        raise AssertionError(f"no {comm} process of pod {pod} on the host")

    def vm_taps(self) -> list[str]:
        """Tap devices on this node's bridge (the VMs' NICs)."""
        bridge = f"{self.prefix}0"
        return sorted(link.name for link in Path("/sys/class/net").iterdir()
                      if (link / "tun_flags").exists() and (link / "master").exists()
                      and (link / "master").resolve().name == bridge)

    def vm_dirs(self) -> list[str]:
        """The VM state directories the QEMU driver keeps under the data dir."""
        root = self.data_dir.resolve() / "vms"
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    # -- tearing down ----------------------------------------------------------

    def delete_workloads(self, *, timeout: float = 90.0) -> list[str]:
        """Delete every workload and pod; the pods still there after ``timeout``."""
        # Orphan the pods, then delete them with a short grace period: deleted
        # by the garbage collector they would get the pod's own (30 s for
        # httpd, which as pid 1 ignores SIGTERM), and the apiserver does not
        # shorten the grace period of a pod already terminating.
        self.kubectl("delete", "deployments,replicasets,statefulsets,daemonsets,jobs", "--all",
                     "-A", "--cascade=orphan", check=False)
        services = self.kubectl("get", "services", "-A", "-o", "json", check=False)
        for svc in json.loads(services.stdout or "{}").get("items") or []:
            meta = svc["metadata"]
            if (meta["namespace"], meta["name"]) != ("default", "kubernetes"):
                self.kubectl("delete", "service", meta["name"], "-n", meta["namespace"],
                             "--wait=false", check=False)
        self.kubectl("delete", "pods", "--all", "-A", "--wait=false", "--grace-period=2",
                     check=False)
        self.kubectl("delete", "virtualmachines", "--all", "-A", "--wait=false", check=False)
        deadline = time.monotonic() + timeout
        left: list[str] = []
        while time.monotonic() < deadline:
            result = self.kubectl("get", "pods,virtualmachines", "-A", "-o", "name", check=False)
            left = result.stdout.split() if result.returncode == 0 else ["?"]
            if not left:
                break
            time.sleep(0.5)
        return left


@dataclass
class Leftovers:
    """What deleting the pods left on the host (should be nothing)."""

    pods: list[str] = field(default_factory=list)
    processes: dict[str, list[int]] = field(default_factory=dict)
    #: VM taps still on the node bridge.
    taps: list[str] = field(default_factory=list)
    #: The pods (hostnames) of the container processes left.
    hostnames: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.pods or any(self.processes.values()) or self.taps)


def teardown(server: NodeServer) -> Leftovers:
    """Delete the workloads (agent running), stop everything and remove what
    is left whatever happened; returns what the deletion left behind."""
    found = Leftovers()
    if server.running() and server.agent_pid() is not None:
        with contextlib.suppress(Exception):
            found.pods = server.delete_workloads()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found.processes = server.runtime_processes()
            if not any(found.processes.values()):
                break
            time.sleep(0.3)
        for pid in found.processes.get("containers", []):
            with contextlib.suppress(OSError):
                found.hostnames.append(Path(f"/proc/{pid}/root/etc/hostname").read_text().strip())
        found.taps = server.vm_taps()
    server.stop_agent()
    server.stop()
    asyncio.run(_force_clean(server))
    return found


async def _force_clean(server: NodeServer) -> None:
    from kubevisor.runtime.network import remove_network

    with contextlib.suppress(Exception):
        from kubevisor.runtime.oci import open_runtime

        runtime = await open_runtime(str(server.data_dir.resolve() / "containers"),
                                     cgroup_parent=server.cgroup_parent)
        for c in await runtime.list():
            with contextlib.suppress(Exception):
                await runtime.stop(c.id, grace_seconds=0)
            with contextlib.suppress(Exception):
                await runtime.remove(c.id)
    processes = server.runtime_processes()
    for pid in processes["conmon"] + processes["qemu"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for tap in server.vm_taps():
        subprocess.run(["ip", "link", "del", tap], capture_output=True, check=False)
    _unmount_under(server.data_dir.resolve())
    with contextlib.suppress(Exception):
        await remove_network(server.network_config())
    await asyncio.sleep(0.3)
    _remove_cgroups(server.cgroup_parent)


def _unmount_under(root: Path) -> None:
    prefix = str(root)
    lines = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1].replace("\\040", " ") for line in lines]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")),
                        key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_cgroups(parent: str) -> None:
    base = Path("/sys/fs/cgroup")
    rel = parent.strip("/")
    for top in [base / rel, *(d / rel for d in base.iterdir() if d.is_dir())]:
        if not rel or not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                        reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def host_leftovers(server: NodeServer) -> dict[str, object]:
    """Names of this node still on the host after :func:`teardown` (should be none)."""
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    netns = Path("/run/netns")
    return {k: v for k, v in {
        "bridge": Path(f"/sys/class/net/{server.prefix}0").exists(),
        "lb_link": Path(f"/sys/class/net/{server.prefix}lb").exists(),
        "netns": sorted(p.name for p in netns.glob(f"{server.prefix}-*")) if netns.is_dir() else [],
        "nft_tables": [line for line in nft.stdout.splitlines()
                       if line.split()[-1:] and line.split()[-1].startswith(server.prefix)],
        "processes": {k: v for k, v in server.runtime_processes().items() if v},
        "vm_dirs": server.vm_dirs(),
    }.items() if v}


@contextlib.contextmanager
def running_node_server(work: Path, *, lb_pool: str | None = None,
                        env: Mapping[str, str] | None = None) -> Iterator[NodeServer]:
    """``kubevisor up`` with its node, Ready; everything removed on exit.
    Raises AssertionError on exit if deleting the pods left containers or
    processes behind, or the clean-up left names on the host."""
    require_node()
    server = NodeServer(data_dir=work / "data", lb_pool=lb_pool, env=env)
    found = Leftovers()
    try:
        server.start(timeout=90)
        server.wait_node_ready()
        yield server
    finally:
        found = teardown(server)
    left = host_leftovers(server)
    assert not found and not left, (f"left behind: deletion {found}, host {left}\n"
                                    f"{server.log_tail(40)}")


# -- helpers of the node suites -------------------------------------------------


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str,
               interval: float = 0.3) -> T:
    """Call ``check`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def client_pod(server: NodeServer, ns: str, image: str, name: str = "client") -> str:
    """A busybox pod that sleeps (requests are sent from it with kubectl exec); Ready."""
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "client", "image": image, "command": ["sleep", "3600"]}]}}
    server.kubectl("create", "-f", "-", input=json.dumps(manifest))
    server.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{name}", "--timeout=90s",
                   timeout=100)
    return name


def fetch(server: NodeServer, ns: str, client: str, url: str) -> str:
    """One GET of ``url`` from pod ``client`` (busybox wget; its -T crashes, so ``timeout``)."""
    return server.kubectl("exec", "-n", ns, client, "--", "timeout", "5", "wget", "-qO-",
                          url).stdout


def pods(server: NodeServer, ns: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", "pods", "-n", ns] + (["-l", selector] if selector else [])
    return list(server.kubectl_json(*args)["items"])


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get(
        "deletionTimestamp") and any(c["type"] == "Ready" and c["status"] == "True"
                                     for c in conditions)


def served_by(page: str) -> tuple[str, str]:
    """(hostname, version) of a page of tests/support/images.py's httpd."""
    match = re.search(r"<h1>([^<]*)</h1><p>version ([^<]*)</p>", page)
    assert match, f"not an httpd test page: {page!r}"
    return match.group(1), match.group(2)
