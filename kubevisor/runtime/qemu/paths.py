"""Where one VM's files live: ``<state-root>/<vm id>/``. The directory is
the VM's only record on the host; a restarted agent finds its VMs by
listing the state root. Used by the command builder and the driver.

QEMU's unix sockets (QMP, serial console) live apart, in
``/run/kubevisor/qemu/<hash of the VM's directory>/``: a socket path may
not exceed 107 bytes, which a data dir a little deep would, and the
sockets mean nothing after a reboot anyway. The hash makes the place a
function of the directory alone, so whoever knows the directory (a
restarted agent, the console stream server) finds the sockets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

#: The parent of every VM's socket directory.
RUN_ROOT = Path("/run/kubevisor/qemu")


@dataclass(frozen=True, slots=True)
class VMPaths:
    """``dir`` must be absolute and resolved (the driver resolves its root)."""

    dir: Path

    @property
    def run_dir(self) -> Path:
        """The directory of the VM's sockets (see the module's docstring)."""
        return RUN_ROOT / hashlib.sha256(str(self.dir).encode()).hexdigest()[:20]

    @property
    def spec(self) -> Path:
        return self.dir / "spec.json"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def qmp(self) -> Path:
        return self.run_dir / "qmp.sock"

    @property
    def console(self) -> Path:
        return self.run_dir / "console.sock"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def uefi_vars(self) -> Path:
        return self.dir / "OVMF_VARS.fd"

    @property
    def state_file(self) -> Path:
        return self.dir / "suspend.state"

    @property
    def run_info(self) -> Path:
        """What the running process was started with (accel, start time)."""
        return self.dir / "run.json"
