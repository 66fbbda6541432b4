"""Runs the controllers of the control plane against one API server.

:func:`run_controllers` is what ``kubevisor up`` calls (in the same process
as the apiserver, or in another: controllers only speak the API). It
connects with the given kubeconfig, builds the selected controllers (all by
default; ``names``/``exclude`` pick them by the names in
:data:`CONTROLLERS`, so the scheduler can run in a process of its own as
kube-scheduler does) on one :class:`~kubevisor.client.SharedInformers` —
one watch per kind for the whole process, as kube-controller-manager's
SharedInformerFactory — runs them and the informers, and stops them when
``stop`` is set. Controllers retry on their own while the apiserver is not
reachable yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevisor.client import Client, SharedInformers
from kubevisor.controllers.csrapproving import CSRApprovingController
from kubevisor.controllers.csrsigning import CSRSigningController
from kubevisor.controllers.daemonset import DaemonSetController
from kubevisor.controllers.deployment import DeploymentController
from kubevisor.controllers.endpoints import EndpointsController
from kubevisor.controllers.endpointslices import EndpointSliceController
from kubevisor.controllers.gc import GarbageCollector
from kubevisor.controllers.job import JobController
from kubevisor.controllers.loadbalancer import LoadBalancerController
from kubevisor.controllers.localstorage import LocalStorageController
from kubevisor.controllers.namespace import NamespaceController
from kubevisor.controllers.nodeipam import NodeIPAMController
from kubevisor.controllers.nodelifecycle import NodeLifecycleController
from kubevisor.controllers.replicaset import ReplicaSetController
from kubevisor.controllers.scheduler import Scheduler
from kubevisor.controllers.statefulset import StatefulSetController
from kubevisor.controllers.vm import VMController
from kubevisor.controllers.vmconsole import VMConsoleController
from kubevisor.controllers.vmservice import VirtualMachineServiceController

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ManagerOptions:
    """What some controllers need to be built (they are skipped without it)."""

    ca_cert_file: Path | None = None  # with ca_key_file: csrsigning
    ca_key_file: Path | None = None
    cluster_cidr: str | None = None  # nodeipam


Builder = Callable[[Client, SharedInformers, ManagerOptions], Any]

#: Every controller by name (kube-controller-manager's names where it has
#: one), in start order, with how to build it (None: not configured).
CONTROLLERS: dict[str, Builder] = {
    "namespace": lambda c, i, o: NamespaceController(c, informers=i),
    "garbagecollector": lambda c, i, o: GarbageCollector(c, informers=i),
    "csrapproving": lambda c, i, o: CSRApprovingController(c, informers=i),
    "csrsigning": lambda c, i, o: CSRSigningController(
        c, ca_cert_file=o.ca_cert_file, ca_key_file=o.ca_key_file, informers=i)
    if o.ca_cert_file is not None and o.ca_key_file is not None else None,
    "nodeipam": lambda c, i, o: NodeIPAMController(c, cluster_cidr=o.cluster_cidr, informers=i)
    if o.cluster_cidr else None,
    "statefulset": lambda c, i, o: StatefulSetController(c, informers=i),
    "replicaset": lambda c, i, o: ReplicaSetController(c, informers=i),
    "deployment": lambda c, i, o: DeploymentController(c, informers=i),
    "scheduler": lambda c, i, o: Scheduler(c, informers=i),
    "daemonset": lambda c, i, o: DaemonSetController(c, informers=i),
    "job": lambda c, i, o: JobController(c, informers=i),
    "nodelifecycle": lambda c, i, o: NodeLifecycleController(c, informers=i),
    "endpoint": lambda c, i, o: EndpointsController(c, informers=i),
    "endpointslice": lambda c, i, o: EndpointSliceController(c, informers=i),
    "loadbalancer": lambda c, i, o: LoadBalancerController(c, informers=i),
    "vm": lambda c, i, o: VMController(c, informers=i),
    "vmservice": lambda c, i, o: VirtualMachineServiceController(c, informers=i),
    "localstorage": lambda c, i, o: LocalStorageController(c, informers=i),
    "vmconsole": lambda c, i, o: VMConsoleController(c, informers=i),
}


def selected(names: Collection[str] | None = None, exclude: Collection[str] = ()) -> list[str]:
    """The controller names to run, in start order: ``names`` (default all)
    minus ``exclude``. Unknown names are a ValueError."""
    unknown = sorted({*(names or ()), *exclude} - CONTROLLERS.keys())
    if unknown:
        raise ValueError(f"unknown controllers {unknown}; known: {', '.join(CONTROLLERS)}")
    wanted = CONTROLLERS.keys() if names is None else set(names)
    return [n for n in CONTROLLERS if n in wanted and n not in exclude]


async def run_controllers(kubeconfig: Path, stop: asyncio.Event, *,
                          ca_cert_file: Path | None = None, ca_key_file: Path | None = None,
                          cluster_cidr: str | None = None,
                          names: Collection[str] | None = None,
                          exclude: Collection[str] = ()) -> None:
    """Run the controllers ``names`` (default: all) but those in
    ``exclude`` until ``stop`` is set. With the cluster CA's files,
    approved node certificate requests are signed; with ``cluster_cidr``,
    Nodes get pod CIDRs from it (node IPAM)."""
    chosen = selected(names, exclude)
    async with Client.from_kubeconfig(kubeconfig) as client:
        await run_controllers_with(client, stop, ca_cert_file=ca_cert_file,
                                   ca_key_file=ca_key_file, cluster_cidr=cluster_cidr,
                                   names=chosen)


async def run_controllers_with(client: Client, stop: asyncio.Event, *,
                               ca_cert_file: Path | None = None, ca_key_file: Path | None = None,
                               cluster_cidr: str | None = None,
                               names: Collection[str] | None = None,
                               exclude: Collection[str] = ()) -> None:
    """As :func:`run_controllers`, on a client the caller owns (tests)."""
    options = ManagerOptions(ca_cert_file=ca_cert_file, ca_key_file=ca_key_file,
                             cluster_cidr=cluster_cidr)
    informers = SharedInformers(client)
    controllers: list[tuple[str, Any]] = []
    for name in selected(names, exclude):
        controller = CONTROLLERS[name](client, informers, options)
        if controller is None:
            log.info("controller %s not started: not configured", name)
            continue
        controllers.append((name, controller))
    log.info("starting controllers: %s", ", ".join(n for n, _ in controllers) or "none")
    # Every controller has asked for its informers by now: start them once.
    tasks = [asyncio.create_task(c.run(), name=name) for name, c in controllers]
    tasks.append(asyncio.create_task(informers.run(), name="informers"))
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
