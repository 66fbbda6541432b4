"""Runs every controller of the control plane against one API server.

:func:`run_controllers` is what ``kubevisor up`` calls (in the same process
as the apiserver, or in another: controllers only speak the API). It
connects with the given kubeconfig, starts the namespace lifecycle
controller and the garbage collector, and stops them when ``stop`` is set.
Controllers retry on their own while the apiserver is not reachable yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from kubevisor.client import Client
from kubevisor.controllers.csrapproving import CSRApprovingController
from kubevisor.controllers.csrsigning import CSRSigningController
from kubevisor.controllers.daemonset import DaemonSetController
from kubevisor.controllers.deployment import DeploymentController
from kubevisor.controllers.endpoints import EndpointsController
from kubevisor.controllers.endpointslices import EndpointSliceController
from kubevisor.controllers.gc import GarbageCollector
from kubevisor.controllers.job import JobController
from kubevisor.controllers.loadbalancer import LoadBalancerController
from kubevisor.controllers.namespace import NamespaceController
from kubevisor.controllers.nodeipam import NodeIPAMController
from kubevisor.controllers.nodelifecycle import NodeLifecycleController
from kubevisor.controllers.replicaset import ReplicaSetController
from kubevisor.controllers.scheduler import Scheduler
from kubevisor.controllers.statefulset import StatefulSetController


async def run_controllers(kubeconfig: Path, stop: asyncio.Event, *,
                          ca_cert_file: Path | None = None, ca_key_file: Path | None = None,
                          cluster_cidr: str | None = None) -> None:
    """Run all controllers until ``stop`` is set. With the cluster CA's
    files, approved node certificate requests are signed; with
    ``cluster_cidr``, Nodes get pod CIDRs from it (node IPAM)."""
    async with Client.from_kubeconfig(kubeconfig) as client:
        await run_controllers_with(client, stop, ca_cert_file=ca_cert_file,
                                   ca_key_file=ca_key_file, cluster_cidr=cluster_cidr)


async def run_controllers_with(client: Client, stop: asyncio.Event, *,
                               ca_cert_file: Path | None = None, ca_key_file: Path | None = None,
                               cluster_cidr: str | None = None) -> None:
    """As :func:`run_controllers`, on a client the caller owns (tests)."""
    controllers: list[Any] = [NamespaceController(client), GarbageCollector(client)]
    controllers.append(CSRApprovingController(client))
    if ca_cert_file is not None and ca_key_file is not None:
        controllers.append(CSRSigningController(client, ca_cert_file=ca_cert_file,
                                                ca_key_file=ca_key_file))
    if cluster_cidr:
        controllers.append(NodeIPAMController(client, cluster_cidr=cluster_cidr))
    controllers.append(StatefulSetController(client))
    controllers.append(ReplicaSetController(client))
    controllers.append(DeploymentController(client))
    controllers.append(Scheduler(client))
    controllers.append(DaemonSetController(client))
    controllers.append(JobController(client))
    controllers.append(NodeLifecycleController(client))
    controllers.append(EndpointsController(client))
    controllers.append(EndpointSliceController(client))
    controllers.append(LoadBalancerController(client))
    tasks = [asyncio.create_task(c.run(), name=type(c).__name__) for c in controllers]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper:
                raise RuntimeError(f"controller {task.get_name()} stopped") from task.exception()
    finally:
        for task in [stopper, *tasks]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
