"""The Table columns of the VM Operator kinds, as upstream's CRDs declare
them (priority 1: shown by ``kubectl get -o wide`` only). The VM's Image
column also shows ``spec.imageName`` while ``spec.image`` is not resolved
yet. Called by ``kinds``.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api import printers
from kubevisor.api.kinds import JSON, PrinterColumn


def _vm_image(vm: JSON) -> Any:
    spec = vm.get("spec") if isinstance(vm.get("spec"), dict) else {}
    image = spec.get("image")
    if isinstance(image, dict) and image.get("name"):
        return image["name"]
    return spec.get("imageName")


def _col(name: str, path: str, *, priority: int = 0, type: str = "string") -> PrinterColumn:
    return PrinterColumn(name=name, type=type, priority=priority, json_path=path)


_AGE = printers.AGE

VIRTUAL_MACHINE = (
    _col("Power-State", ".status.powerState"),
    _col("Class", ".spec.className", priority=1),
    PrinterColumn(name="Image", type="string", priority=1, func=_vm_image),
    _col("Primary-IP4", ".status.network.primaryIP4", priority=1),
    _AGE,
)

VIRTUAL_MACHINE_CLASS = (
    _col("CPU", ".spec.hardware.cpus"),
    _col("Memory", ".spec.hardware.memory"),
    _col("Capabilities", ".status.capabilities", priority=1),
)


def _image_columns(*, capabilities: bool) -> tuple[PrinterColumn, ...]:
    cols = (
        _col("Display Name", ".status.name"),
        _col("Type", ".status.type"),
        _col("Image Version", ".status.productInfo.version"),
        _col("OS Name", ".status.osInfo.type"),
        _col("OS Version", ".status.osInfo.version"),
        _col("Hardware Version", ".status.hardwareVersion"),
    )
    return (*cols, _col("Capabilities", ".status.capabilities")) if capabilities else cols


VIRTUAL_MACHINE_IMAGE = _image_columns(capabilities=True)
CLUSTER_VIRTUAL_MACHINE_IMAGE = _image_columns(capabilities=False)
VIRTUAL_MACHINE_SERVICE = (_col("Type", ".spec.type"), _AGE)


def columns_for(kind: str) -> tuple[PrinterColumn, ...]:
    """A kind's Table columns with Name first (Name and Age if it declares none)."""
    declared = {
        "VirtualMachine": VIRTUAL_MACHINE,
        "VirtualMachineClass": VIRTUAL_MACHINE_CLASS,
        "VirtualMachineImage": VIRTUAL_MACHINE_IMAGE,
        "ClusterVirtualMachineImage": CLUSTER_VIRTUAL_MACHINE_IMAGE,
        "VirtualMachineService": VIRTUAL_MACHINE_SERVICE,
    }.get(kind, ())
    return printers.custom_columns(declared)
