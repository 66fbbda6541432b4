"""The node agent's entry point: :func:`run_node`.

Connects to the API with a kubeconfig, builds the runtime drivers (the
OCI runtime, the image store under ``<data-dir>/images``, the pod network
under ``<data-dir>/network``) unless a caller hands them in, then runs
node registration with its Lease heartbeat, the pod manager, (when the
host has a proxy driver) the service proxy and (when the host has QEMU:
the driver under ``<data-dir>/vms``) the VM runner
(:mod:`kubevisor.node.vms`) until ``stop`` is set. The
heartbeat (Lease, node status) has an API client of its own
(:mod:`kubevisor.node.apiclient`). Stopping leaves every container running: a new agent on
the same data dir re-adopts them (restartCount unchanged); QEMU
processes too. Called by
``kubevisor up`` (for the local host) and ``kubevisor join``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevisor.client import load_kubeconfig
from kubevisor.node.apiclient import open_clients
from kubevisor.node.config import NodeConfig
from kubevisor.node.hostinfo import default_route_ip
from kubevisor.node.pods import PodManager
from kubevisor.node.registration import NodeRegistrar
from kubevisor.runtime.types import ContainerRuntime, ImageStore, PodNetwork, ServiceProxy

if TYPE_CHECKING:
    from kubevisor.node.streams import StreamServerConfig
    from kubevisor.runtime.network.vmports import VMPorts
    from kubevisor.runtime.qemu import QemuDriver

log = logging.getLogger(__name__)
DEFAULT_POD_CIDR = "10.88.0.0/24"
#: Threads for blocking pod work (network set-up, IPAM and rootfs file
#: I/O, volumes): mostly waiting on ``ip``, fsync and mounts, so more than
#: asyncio's default (cores + 4), which queued pod starts behind each other.
BLOCKING_THREADS = 32
#: Node annotations naming the accelerator QEMU uses on this host (kvm or
#: tcg) and why (the KVM probe's finding).
ACCEL_ANNOTATION = "vmoperator.kubevisor.io/accel"
ACCEL_REASON_ANNOTATION = "vmoperator.kubevisor.io/accel-reason"


@dataclass(slots=True)
class Drivers:
    runtime: ContainerRuntime
    images: ImageStore
    network: PodNetwork
    proxy: ServiceProxy | None = None
    #: Where the cluster DNS listens (the pod bridge's gateway), if anywhere.
    dns_address: str | None = None
    #: The QEMU driver for VirtualMachines (None: this host runs no VMs).
    vms: QemuDriver | None = None
    #: Addresses for VM NICs from the pod network's IPAM (with ``vms``).
    vm_ports: VMPorts | None = None


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
                        network_options: dict[str, Any] | None = None,
                        vm_driver: bool = True) -> Drivers:
    """The real drivers of this host, state under ``data_dir`` (imported
    here, so that a build without them can still register the node);
    ``vm_driver=False`` leaves the QEMU driver out (a caller adding its own)."""
    from kubevisor.runtime import oci
    from kubevisor.runtime.images import LocalImageStore
    from kubevisor.runtime.network import start_network

    runtime = await oci.open_runtime(str(data_dir / "containers"), cgroup_parent=cgroup_parent)
    images = LocalImageStore(data_dir / "images")
    cfg = network_config(data_dir, pod_cidr=pod_cidr, network_prefix=network_prefix,
                         **(network_options or {}))
    net = await start_network(cfg)
    vms, vm_ports = await open_vm_driver(data_dir, cfg) if vm_driver else (None, None)
    return Drivers(runtime=runtime, images=images, network=net.pods, proxy=net.proxy,
                   dns_address=str(cfg.gateway), vms=vms, vm_ports=vm_ports)


async def open_vm_driver(data_dir: Path, network: Any) -> tuple[QemuDriver | None,
                                                                  VMPorts | None]:
    """The QEMU driver under ``<data-dir>/vms`` and the VM addresses of the
    pod network ``network``, or (None, None) when this host cannot run VMs
    (no qemu-system-x86_64, a failed probe): the agent then runs pods only.
    The KVM probe boots the kernel named by ``$KUBEVISOR_VM_PROBE_KERNEL``,
    else the host's own, else the test guest's (``kubevisor image
    add-test-guest`` builds it under ``<data-dir>/cache/guest``); with no
    kernel at all VMs run under TCG (a boot sector running under KVM does
    not prove a Linux guest will). ``$KUBEVISOR_VM_ACCEL`` (kvm or tcg)
    skips the probe."""
    import os
    import shutil

    from kubevisor.runtime.qemu.probe import QEMU, host_kernel

    if shutil.which(QEMU) is None:
        log.info("%s is not installed: this node runs no VirtualMachines", QEMU)
        return None, None
    from kubevisor.runtime.errors import RuntimeFailure
    from kubevisor.runtime.network.vmports import VMPorts
    from kubevisor.runtime.qemu import QemuDriver

    force = os.environ.get("KUBEVISOR_VM_ACCEL") or None
    kernel = os.environ.get("KUBEVISOR_VM_PROBE_KERNEL") or host_kernel() or next(
        (str(p) for p in sorted(data_dir.glob("cache/guest/test-guest-*/vmlinuz"))), None)
    try:
        driver = await QemuDriver.open(data_dir / "vms", force_accel=force, probe_kernel=kernel)
    except (RuntimeFailure, OSError) as exc:
        log.warning("the QEMU driver cannot start (%s): this node runs no VirtualMachines", exc)
        return None, None
    return driver, VMPorts(network)


async def run_node(*, kubeconfig: Path, data_dir: Path, node_name: str | None,
                   stop: asyncio.Event, pod_cidr: str | None = None,
                   node_ip: str | None = None, max_pods: int = 110,
                   drivers: Drivers | None = None, network_prefix: str | None = None,
                   cgroup_parent: str = "/kubevisor",
                   network_options: dict[str, Any] | None = None,
                   cluster_dns: bool = True,
                   streams: StreamServerConfig | None = None,
                   config_overrides: dict[str, Any] | None = None) -> None:
    """Run the agent for this host until ``stop`` is set.

    ``cluster_dns``: serve the cluster zone on the pod bridge's gateway and
    point pods' resolv.conf at it. ``streams``: serve logs/exec/attach/
    port-forward (kubelet's port) and publish the port in the Node's
    ``daemonEndpoints``.
    """
    data_dir = data_dir.resolve()
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=BLOCKING_THREADS, thread_name_prefix="node-blocking"))
    conn = load_kubeconfig(kubeconfig)
    name = (node_name or socket.gethostname()).lower()
    node_ip = node_ip or default_route_ip() or "127.0.0.1"
    own = drivers is None
    if drivers is None:
        drivers = await build_drivers(data_dir, pod_cidr=pod_cidr or DEFAULT_POD_CIDR,
                                      network_prefix=network_prefix,
                                      cgroup_parent=cgroup_parent,
                                      network_options=network_options)
    caps = drivers.runtime.capabilities
    dns_ip = drivers.dns_address if cluster_dns else None
    async with contextlib.AsyncExitStack() as stack:
        client, heartbeat = await stack.enter_async_context(open_clients(kubeconfig))
        if own:
            closer = getattr(drivers.images, "aclose", None)
            if closer is not None:
                stack.push_async_callback(closer)
        pods_ref: list[PodManager] = []
        kubelet_port = 10250
        if streams is not None:
            from kubevisor.node.streams import serve_streams

            lookup = streams.pod_lookup or (
                lambda ns, n: pods_ref[0].informer.get(n, ns) if pods_ref else None)
            streams = dataclasses.replace(streams, pod_lookup=lookup)
            kubelet_port = await stack.enter_async_context(serve_streams(
                streams, drivers.runtime, drivers.network, data_dir / "pods"))
        overrides = dict(config_overrides or {})
        if drivers.vms is not None:  # which accelerator the node's VMs run with, and why
            vm_caps = drivers.vms.capabilities
            overrides["annotations"] = {ACCEL_ANNOTATION: vm_caps.accel,
                                        ACCEL_REASON_ANNOTATION: vm_caps.reason,
                                        **overrides.get("annotations", {})}
        config = NodeConfig(node_name=name, data_dir=data_dir,
                            pod_cidr=pod_cidr or DEFAULT_POD_CIDR, node_ip=node_ip,
                            max_pods=max_pods, token=conn.token or "", ca_pem=conn.ca_pem or "",
                            cluster_dns=dns_ip, kubelet_port=kubelet_port, **overrides)
        pods = PodManager(client, config, runtime=drivers.runtime, images=drivers.images,
                          network=drivers.network, host_ip=node_ip)
        pods_ref.append(pods)
        registrar = NodeRegistrar(heartbeat, config, runtime_version=f"{caps.name}://{caps.version}",
                                  not_ready=pods.health)
        parts: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("node-registration", registrar.run()), ("node-pods", pods.run())]
        if drivers.proxy is not None:
            from kubevisor.node.serviceproxy import ServiceProxyController
            proxy = ServiceProxyController(client, drivers.proxy)
            pods.drain = proxy.wait_unrouted
            parts.append(("node-service-proxy", proxy.run()))
        if dns_ip is not None:
            from kubevisor.node.dns import ClusterDNS
            parts.append(("node-cluster-dns", ClusterDNS(client, address=dns_ip).run()))
        if drivers.vms is not None and drivers.vm_ports is not None:
            from kubevisor.node.vms import VMManager
            parts.append(("node-vms", VMManager(client, config, driver=drivers.vms,
                                                ports=drivers.vm_ports).run()))
        else:
            log.info("node %s: no VM driver, VirtualMachines are not run here", name)
        await _run_until(stop, parts)


async def _run_until(stop: asyncio.Event,
                     parts: list[tuple[str, Coroutine[Any, Any, None]]]) -> None:
    """Run ``parts`` as tasks until ``stop`` is set (or one of them fails)."""
    tasks = [asyncio.create_task(coro, name=name) for name, coro in parts]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper:
                raise RuntimeError(f"node agent part {task.get_name()} stopped") \
                    from task.exception()
    finally:
        for task in [stopper, *tasks]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
