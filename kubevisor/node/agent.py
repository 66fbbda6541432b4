"""The node agent's entry point: :func:`run_node`.

Connects to the API with a kubeconfig, builds the runtime drivers (the
OCI runtime, the image store under ``<data-dir>/images``, the pod network
under ``<data-dir>/network``) unless a caller hands them in, then runs
node registration with its Lease heartbeat, the pod manager and (when the
host has a proxy driver) the service proxy until ``stop`` is set. Stopping leaves every container running: a new agent on
the same data dir re-adopts them (restartCount unchanged). Called by
``kubevisor up`` (for the local host) and ``kubevisor join``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevisor.client import Client, load_kubeconfig
from kubevisor.node.config import NodeConfig
from kubevisor.node.hostinfo import default_route_ip
from kubevisor.node.pods import PodManager
from kubevisor.node.registration import NodeRegistrar
from kubevisor.runtime.types import ContainerRuntime, ImageStore, PodNetwork, ServiceProxy

log = logging.getLogger(__name__)
DEFAULT_POD_CIDR = "10.88.0.0/24"


@dataclass(slots=True)
class Drivers:
    runtime: ContainerRuntime
    images: ImageStore
    network: PodNetwork
    proxy: ServiceProxy | None = None


def network_config(data_dir: Path, *, pod_cidr: str, network_prefix: str | None = None,
                   **options: Any) -> Any:
    """The pod network's config under ``<data-dir>/network``; ``network_prefix``
    gives every host name it makes (bridge, netns, veths, nft tables) that
    prefix (tests, or two agents on one host)."""
    from kubevisor.runtime.network import NetworkConfig

    kwargs: dict[str, Any] = {"pod_cidr": pod_cidr, "state_dir": str(data_dir / "network"),
                              **options}
    if network_prefix:
        return NetworkConfig.with_prefix(network_prefix, **kwargs)
    return NetworkConfig(**kwargs)


async def build_drivers(data_dir: Path, *, pod_cidr: str, network_prefix: str | None = None,
                        cgroup_parent: str = "/kubevisor",
                        network_options: dict[str, Any] | None = None) -> Drivers:
    """The real drivers of this host, state under ``data_dir`` (imported
    here, so that a build without them can still register the node)."""
    from kubevisor.runtime import oci
    from kubevisor.runtime.images import LocalImageStore
    from kubevisor.runtime.network import start_network

    runtime = await oci.open_runtime(str(data_dir / "containers"), cgroup_parent=cgroup_parent)
    images = LocalImageStore(data_dir / "images")
    net = await start_network(network_config(data_dir, pod_cidr=pod_cidr,
                                             network_prefix=network_prefix,
                                             **(network_options or {})))
    return Drivers(runtime=runtime, images=images, network=net.pods, proxy=net.proxy)


async def run_node(*, kubeconfig: Path, data_dir: Path, node_name: str | None,
                   stop: asyncio.Event, pod_cidr: str | None = None,
                   node_ip: str | None = None, max_pods: int = 110,
                   drivers: Drivers | None = None, network_prefix: str | None = None,
                   cgroup_parent: str = "/kubevisor",
                   network_options: dict[str, Any] | None = None,
                   config_overrides: dict[str, Any] | None = None) -> None:
    """Run the agent for this host until ``stop`` is set."""
    data_dir = data_dir.resolve()
    conn = load_kubeconfig(kubeconfig)
    name = (node_name or socket.gethostname()).lower()
    node_ip = node_ip or default_route_ip() or "127.0.0.1"
    config = NodeConfig(node_name=name, data_dir=data_dir, pod_cidr=pod_cidr or DEFAULT_POD_CIDR,
                        node_ip=node_ip, max_pods=max_pods, token=conn.token or "",
                        ca_pem=conn.ca_pem or "", **(config_overrides or {}))
    own = drivers is None
    if drivers is None:
        drivers = await build_drivers(data_dir, pod_cidr=config.pod_cidr or DEFAULT_POD_CIDR,
                                      network_prefix=network_prefix,
                                      cgroup_parent=cgroup_parent,
                                      network_options=network_options)
    caps = drivers.runtime.capabilities
    async with Client.from_kubeconfig(kubeconfig) as client:
        registrar = NodeRegistrar(client, config, runtime_version=f"{caps.name}://{caps.version}")
        pods = PodManager(client, config, runtime=drivers.runtime, images=drivers.images,
                          network=drivers.network, host_ip=node_ip)
        tasks = [asyncio.create_task(registrar.run(), name="node-registration"),
                 asyncio.create_task(pods.run(), name="node-pods")]
        if drivers.proxy is not None:
            from kubevisor.node.serviceproxy import ServiceProxyController
            proxy = ServiceProxyController(client, drivers.proxy)
            tasks.append(asyncio.create_task(proxy.run(), name="node-service-proxy"))
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise RuntimeError(f"node agent part {task.get_name()} stopped") \
                        from task.exception()
        finally:
            for task in [stopper, *tasks]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            closer = getattr(drivers.images, "aclose", None)
            if own and closer is not None:
                await closer()
