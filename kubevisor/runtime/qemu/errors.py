"""The QEMU driver's exceptions, below the runtime's
:class:`~kubevisor.runtime.errors.RuntimeFailure` (candidates to move
into ``kubevisor/runtime/errors.py``)::

    RuntimeFailure
    └── VMError                    a QEMU/QMP/qemu-img call failed
        ├── VMNotFoundError        no VM of that id on this host
        ├── VMStateError           the VM is not in a state that allows it
        ├── DiskError              qemu-img failed (create, resize, info)
        ├── SeedError              the NoCloud seed could not be written
        └── GuestImageError        the test guest image could not be built
"""

from __future__ import annotations

from kubevisor.runtime.errors import RuntimeFailure


class VMError(RuntimeFailure):
    pass


class VMNotFoundError(VMError):
    pass


class VMStateError(VMError):
    pass


class DiskError(VMError):
    pass


class SeedError(VMError):
    pass


class GuestImageError(VMError):
    pass
