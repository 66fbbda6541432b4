"""Helpers for the node agent's end-to-end tests: the real drivers with
test-specific names (a random bridge, netns/veth prefix, nft table, pod
CIDR and cgroup parent) and an agent running as a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client
from kubevisor.node.agent import Drivers, build_drivers, network_config, run_node


def require_drivers() -> None:
    if os.geteuid() != 0:
        pytest.skip("the node agent's end-to-end tests need root")
    for mod in ("kubevisor.runtime.oci", "kubevisor.runtime.images",
                "kubevisor.runtime.network", "tests.support.registry"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not in this tree yet")


@dataclass
class HostSetup:
    """Where and under which names one test's drivers live."""

    root: Path
    prefix: str
    pod_cidr: str

    @property
    def data_dir(self) -> Path:
        return self.root / "node"

    def network_config(self) -> Any:
        return network_config(self.data_dir, pod_cidr=self.pod_cidr,
                              network_prefix=self.prefix)

    async def drivers(self) -> Drivers:
        """Fresh driver objects over the same state (what a restarted agent builds)."""
        return await build_drivers(self.data_dir, pod_cidr=self.pod_cidr,
                                   network_prefix=self.prefix, cgroup_parent=f"/{self.prefix}")

    def agent_args(self, kubeconfig: Path, node_name: str = "node-e2e") -> list[str]:
        """argv of the agent process as ``kubevisor up`` starts it."""
        return [sys.executable, "-m", "kubevisor.cli.nodeagent", "--kubeconfig", str(kubeconfig),
                "--data-dir", str(self.data_dir), "--node-name", node_name, "--pod-cidr",
                self.pod_cidr, "--node-ip", "127.0.0.1", "--network-prefix", self.prefix,
                "--cgroup-parent", f"/{self.prefix}"]

    async def cleanup(self) -> None:
        from kubevisor.runtime.network import remove_network
        from kubevisor.runtime.oci import open_runtime

        with contextlib.suppress(Exception):
            runtime = await open_runtime(str(self.data_dir / "containers"),
                                         cgroup_parent=f"/{self.prefix}")
            for c in await runtime.list():
                with contextlib.suppress(Exception):
                    await runtime.stop(c.id, grace_seconds=0)
                with contextlib.suppress(Exception):
                    await runtime.remove(c.id)
        from kubevisor.runtime.images import LocalImageStore
        images = LocalImageStore(self.data_dir / "images")
        for rootfs in (self.data_dir / "pods").glob("*/containers/*/rootfs"):
            with contextlib.suppress(Exception):
                await images.release_rootfs(str(rootfs))
        await images.aclose()
        with contextlib.suppress(Exception):
            await remove_network(self.network_config())


def new_setup(root: Path) -> HostSetup:
    prefix = "kvn" + secrets.token_hex(2)
    cidr = f"10.{random.randint(160, 250)}.{random.randint(0, 255)}.0/24"
    return HostSetup(root=root, prefix=prefix, pod_cidr=cidr)


@contextlib.asynccontextmanager
async def agent(kubeconfig: Path, setup: HostSetup, *, node_name: str = "node-e2e",
                **kwargs: Any) -> AsyncIterator[None]:
    """run_node as a task, stopped (containers left running) on exit."""
    stop = asyncio.Event()
    drivers = await setup.drivers()
    task = asyncio.create_task(run_node(
        kubeconfig=kubeconfig, data_dir=setup.data_dir, node_name=node_name,
        stop=stop, pod_cidr=setup.pod_cidr, node_ip="127.0.0.1", drivers=drivers, **kwargs))
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            closer = getattr(drivers.images, "aclose", None)
            if closer is not None:
                await closer()


async def wait_for(check: Callable[[], Awaitable[Any]], *, timeout: float = 60,
                   what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def pod_where(api: Client, name: str, pred: Callable[[dict[str, Any]], bool],
                    *, timeout: float = 60, namespace: str = "default") -> dict[str, Any]:
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = await api.get("v1", "Pod", name, namespace=namespace)
        return last if pred(last) else None

    try:
        return await wait_for(check, timeout=timeout, what=f"pod {name}")  # type: ignore[no-any-return]
    except AssertionError:
        raise AssertionError(f"pod {name} never matched; status: {last.get('status')}") from None


def busybox_pod(name: str, image: str, command: list[str], *, node: str = "node-e2e",
                **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": image, "command": command,
                 **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [container],
                     "terminationGracePeriodSeconds": 5, **spec}}
