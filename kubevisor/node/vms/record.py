"""What the node agent remembers of one VM on the host, beside the driver's
own files: ``<vms-root>/<uid>/agent.json``. It holds the spec the VM was
last defined with and the one its running QEMU was started with (so a
class change can say "pending restart" and a suspended VM resumes with
the hardware it was saved with), the hash of the seed's inputs, the
kernel-boot answer for its image, and the last restart request carried
out. Everything else is read afresh from the API and the driver, so a new
agent on the same data dir picks up where the old one stopped. Written
atomically; removed with the VM's directory. Used by the VM worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubevisor.runtime.qemu import DirectBoot, VMSpec
from kubevisor.runtime.qemu.store import spec_from_json, spec_to_json

FILE = "agent.json"


def spec_hash(spec: VMSpec) -> str:
    return hashlib.sha256(json.dumps(spec_to_json(spec), sort_keys=True).encode()).hexdigest()


@dataclass(slots=True)
class Record:
    defined: str = ""  # spec_hash of the spec last given to driver.create
    started: dict[str, Any] | None = None  # the spec (JSON) the running QEMU started with
    seed: str = ""  # hash of the seed's inputs last written
    boot_checked: bool = False  # kernel-boot extraction ran for this VM's image
    direct_boot: dict[str, str] | None = None
    last_restart: str = ""  # the spec.nextRestartTime last carried out
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def started_spec(self) -> VMSpec | None:
        return spec_from_json(self.started) if self.started else None

    @property
    def started_hash(self) -> str:
        spec = self.started_spec
        return spec_hash(spec) if spec is not None else ""

    def boot(self) -> DirectBoot | None:
        return DirectBoot(**self.direct_boot) if self.direct_boot else None


def path(vm_dir: Path) -> Path:
    return vm_dir / FILE


def read(vm_dir: Path) -> Record:
    try:
        data = json.loads(path(vm_dir).read_text())
    except (OSError, ValueError):
        return Record()
    known = {f.name for f in dataclasses.fields(Record)}
    return Record(**{k: v for k, v in data.items() if k in known})


def write(vm_dir: Path, record: Record) -> None:
    """Write ``record`` (nothing when the file already says the same)."""
    text = json.dumps(dataclasses.asdict(record), sort_keys=True)
    try:
        if path(vm_dir).read_text() == text:
            return
    except OSError:
        pass
    vm_dir.mkdir(parents=True, exist_ok=True)
    tmp = vm_dir / f".{FILE}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path(vm_dir))


def started(spec: VMSpec) -> dict[str, Any]:
    return spec_to_json(spec)
