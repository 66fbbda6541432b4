"""Node registration, status reports and the Lease heartbeat (the shell).

:class:`NodeRegistrar` creates the Node (or, when it exists, adds missing
labels and podCIDR), then runs two loops until cancelled: the Lease is
renewed every ``lease_renew_seconds``; the status is recomputed every
``status_check_seconds`` and written through ``nodes/<name>/status`` when
it changed or ``status_report_seconds`` (5 min) passed since the last
report, as kubelet does with node leases. API failures are logged and
retried on the next tick. Started by :func:`kubevisor.node.agent.run_node`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kubevisor.client import AlreadyExistsError, Client, ClientError, NotFoundError
from kubevisor.node import lease as leases
from kubevisor.node import nodestatus
from kubevisor.node.clock import Clock, wall
from kubevisor.node.config import LEASE_NAMESPACE, NodeConfig
from kubevisor.node.hostinfo import HostFacts, read_host

JSON = dict[str, Any]
log = logging.getLogger(__name__)


class NodeRegistrar:
    def __init__(self, client: Client, config: NodeConfig, *, runtime_version: str,
                 clock: Clock = wall,
                 facts: Callable[[], HostFacts] | None = None,
                 not_ready: Callable[[], str | None] = lambda: None) -> None:
        self.client = client
        self.config = config
        self.runtime_version = runtime_version
        self._clock = clock
        self._facts = facts or (lambda: read_host(config.data_dir, node_ip=config.node_ip))
        self._not_ready = not_ready
        self.node: JSON | None = None
        self.lease: JSON | None = None
        self._last_report = 0.0
        #: Set once the Node exists.
        self.registered = asyncio.Event()

    @property
    def node_uid(self) -> str | None:
        return ((self.node or {}).get("metadata") or {}).get("uid")

    async def register(self) -> JSON:
        facts = self._facts()
        now = self._clock()
        body = nodestatus.node_object(facts, self.config, runtime_version=self.runtime_version,
                                      now=now)
        try:
            self.node = await self.client.create(body)
            self._last_report = now
        except AlreadyExistsError:
            node = await self.client.get("v1", "Node", self.config.node_name)
            patch = nodestatus.spec_patch(node, facts, self.config)
            if patch:
                node = await self.client.patch("v1", "Node", self.config.node_name, patch)
            self.node = node
            await self.report_status(force=True)
        self.registered.set()
        log.info("node %s registered", self.config.node_name)
        return self.node

    async def report_status(self, *, force: bool = False) -> bool:
        """Write the status if it changed (or ``force``, or the report is due)."""
        now = self._clock()
        previous = (self.node or {}).get("status")
        status = nodestatus.node_status(self._facts(), self.config,
                                        runtime_version=self.runtime_version,
                                        previous=previous, now=now,
                                        not_ready=self._not_ready())
        due = now - self._last_report >= self.config.status_report_seconds
        if not (force or due or nodestatus.status_differs(previous, status)):
            return False
        self.node = await self.client.patch("v1", "Node", self.config.node_name,
                                            {"status": status}, subresource="status")
        self._last_report = now
        return True

    async def renew_lease(self) -> JSON:
        cfg = self.config
        now = self._clock()
        if self.lease is None:
            try:
                self.lease = await self.client.get("coordination.k8s.io/v1", "Lease",
                                                   cfg.node_name, namespace=LEASE_NAMESPACE)
            except NotFoundError:
                self.lease = await self.client.create(leases.lease_object(
                    cfg.node_name, node_uid=self.node_uid,
                    duration=cfg.lease_duration_seconds, now=now))
                return self.lease
        body = leases.renewed(self.lease, cfg.node_name, node_uid=self.node_uid,
                              duration=cfg.lease_duration_seconds, now=now)
        try:
            self.lease = await self.client.update(body)
        except ClientError:
            self.lease = None  # re-read next time (conflict, deleted, ...)
            raise
        return self.lease

    async def run(self) -> None:
        """Register (retrying), then keep the lease and status fresh until cancelled."""
        delay = 0.2
        while not self.registered.is_set():
            try:
                await self.register()
            except ClientError as exc:
                log.warning("node registration failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 7.0)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._every(self.config.lease_renew_seconds, self.renew_lease),
                              name="node-lease")
            group.create_task(self._every(self.config.status_check_seconds, self._status_tick),
                              name="node-status")

    async def _status_tick(self) -> None:
        try:
            await self.report_status()
        except NotFoundError:
            log.warning("node %s was deleted; registering again", self.config.node_name)
            await self.register()

    async def _every(self, period: float, step: Callable[[], Any]) -> None:
        while True:
            try:
                await step()
            except ClientError as exc:
                log.warning("node %s: %s failed: %s", self.config.node_name,
                            getattr(step, "__name__", step), exc)
            await asyncio.sleep(period)
