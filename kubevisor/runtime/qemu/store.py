"""A VM's spec and run record on disk (``spec.json``, ``run.json`` in its
state directory), written atomically and read back into dataclasses.
Used by :mod:`~kubevisor.runtime.qemu.driver`; nothing else is kept in
memory, so a new driver object sees exactly what the old one left.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from kubevisor.runtime.qemu.types import DirectBoot, Disk, NetworkInterface, Seed, VMSpec


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def spec_to_json(spec: VMSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def spec_from_json(data: dict[str, Any]) -> VMSpec:
    return VMSpec(
        id=data["id"], cpus=int(data["cpus"]), memory_bytes=int(data["memory_bytes"]),
        firmware=data.get("firmware", "bios"),
        disks=tuple(Disk(**disk) for disk in data.get("disks", ())),
        seed=Seed(**data["seed"]) if data.get("seed") else None,
        interfaces=tuple(NetworkInterface(
            mac=nic["mac"], tap=nic.get("tap", ""), bridge=nic.get("bridge", ""),
            host_forwards=tuple((int(h), int(g)) for h, g in nic.get("host_forwards", ())))
            for nic in data.get("interfaces", ())),
        direct_boot=DirectBoot(**data["direct_boot"]) if data.get("direct_boot") else None,
        uuid=data.get("uuid", ""), console_log=data.get("console_log", ""),
        labels=dict(data.get("labels", {})))
