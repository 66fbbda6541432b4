"""Events about VirtualMachines, posted as the node agent (source
``kubevisor-node``/<node>): power operations and their failures. The pod
recorder's (:mod:`kubevisor.node.events`): a repeat of the same event
bumps the count of the one posted instead of adding another, and a
failure to post is logged, never raised. Used by the VM worker.
"""

from __future__ import annotations

from kubevisor.client import Client
from kubevisor.node.clock import Clock, wall
from kubevisor.node.events import EventRecorder

COMPONENT = "kubevisor-node"


def vm_events(client: Client, node: str, *, clock: Clock = wall) -> EventRecorder:
    """The recorder of VM events for ``node``."""
    return EventRecorder(client, node, clock=clock, component=COMPONENT)
