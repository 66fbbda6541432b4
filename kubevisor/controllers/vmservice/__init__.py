"""The VirtualMachineService controller: each VirtualMachineService becomes
a selector-less Service of the same name and an Endpoints listing the
matching VMs' addresses (:mod:`.plan`, pure), kept by the shell in
:mod:`.controller`, which the controller manager starts as ``vmservice``.
"""

from kubevisor.controllers.vmservice.controller import VirtualMachineServiceController

__all__ = ["VirtualMachineServiceController"]
