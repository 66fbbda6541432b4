"""Events about VirtualMachines, posted as the node agent (source
``kubevisor-node``/<node>): power operations and their failures. A failure
to post is logged, never raised: an event is worth less than the work it
describes. Used by the VM worker.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubevisor.client import Client, ClientError
from kubevisor.node.clock import Clock, rfc3339, wall

log = logging.getLogger(__name__)
COMPONENT = "kubevisor-node"


def event_object(vm: Mapping[str, Any], *, type: str, reason: str, message: str, node: str,
                 now: float) -> dict[str, Any]:
    md = vm.get("metadata") or {}
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{md.get('name')}.{int(now * 1e9):x}",
                     "namespace": md.get("namespace")},
        "involvedObject": {"apiVersion": vm.get("apiVersion"), "kind": vm.get("kind"),
                           "namespace": md.get("namespace"), "name": md.get("name"),
                           "uid": md.get("uid"), "resourceVersion": md.get("resourceVersion")},
        "reason": reason, "message": message, "type": type,
        "source": {"component": COMPONENT, "host": node},
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        "reportingComponent": COMPONENT, "reportingInstance": node,
    }


class VMEvents:
    def __init__(self, client: Client, node: str, *, clock: Clock = wall) -> None:
        self.client = client
        self.node = node
        self.clock = clock

    async def emit(self, vm: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        body = event_object(vm, type=type, reason=reason, message=message, node=self.node,
                            now=self.clock())
        try:
            await self.client.create(body)
        except ClientError as exc:
            md = vm.get("metadata") or {}
            log.info("event %s for VM %s/%s not posted: %s", reason, md.get("namespace"),
                     md.get("name"), exc)
