"""The VirtualMachine controller (issue 4, VM Operator).

For each VirtualMachine: resolve its class, image, volumes and bootstrap
Secrets into the conditions VirtualMachineClassReady,
VirtualMachineImageReady, VirtualMachineStorageReady and
VirtualMachineBootstrapReady; once class and image are ready, place it on
a node with the scheduler's filters and scores (:mod:`.placement`), add
the host-cleanup finalizer and write ``status.nodeName``, which the node
agent watches. Pure parts: :mod:`.plan`, :mod:`.placement`; the shell:
:mod:`.controller`, started by the controller manager as ``vm``.
"""

from kubevisor.controllers.vm.controller import VMController

__all__ = ["VMController"]
