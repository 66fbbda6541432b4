"""Where one VM's files live: ``<state-root>/<vm id>/``. The directory is
the VM's only record on the host; a restarted agent finds its VMs by
listing the state root. Used by the command builder and the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class VMPaths:
    dir: Path

    @property
    def spec(self) -> Path:
        return self.dir / "spec.json"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def console(self) -> Path:
        return self.dir / "console.sock"

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
