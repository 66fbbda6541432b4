"""The VirtualMachines bound to this node, run on the QEMU driver.

:class:`~kubevisor.node.vms.manager.VMManager` watches the VMs whose
``status.nodeName`` is this node and keeps one worker per VM uid
(:mod:`~kubevisor.node.vms.worker`), which translates the VM into a plain
:class:`~kubevisor.runtime.qemu.VMSpec` (:mod:`.desired`, :mod:`.cloudinit`),
plans the power operations (:mod:`.plan`), applies them through the
driver and writes the node agent's part of the VM's status
(:mod:`.status`). Names the host sees (MAC, tap, UUIDs) are in
:mod:`.names`; what the agent remembers per VM on the host is
:mod:`.record`. Started by :func:`kubevisor.node.agent.run_node`.
"""

from kubevisor.node.vms.manager import VMManager

__all__ = ["VMManager"]
