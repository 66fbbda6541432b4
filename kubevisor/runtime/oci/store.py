"""Where the OCI driver keeps what it knows, so a new agent finds it again.

One directory per container under ``<state_dir>/containers/<id>/``: the
bundle's ``config.json``, ``record.json`` (labels, log path, pids, times,
the runtime command that controls it), the runtime's pid file, and what
conmon writes there (``conmon.pid``, and on exit ``exit`` and maybe ``oom``).
Used only by :mod:`kubevisor.runtime.oci.runtime`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubevisor.runtime.errors import ContainerError

#: What runc and crun accept as a container id (and safe as a file name).
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


@dataclass(slots=True)
class ContainerRecord:
    """What survives the agent for one container."""

    id: str
    runtime: str
    prefix: list[str]
    root: str
    log_path: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    started_at: float | None = None
    pid: int = 0
    #: /proc/<pid>/stat start time, so a reused pid is not mistaken for ours.
    pid_start: int = 0
    conmon_pid: int = 0
    cgroup_dirs: dict[str, str] = field(default_factory=dict)


class StateDir:
    """The layout of ``state_dir``."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.containers = self.root / "containers"
        self.exits = self.root / "exits"
        self.sockets = self.root / "sockets"
        for directory in (self.containers, self.exits, self.sockets):
            directory.mkdir(parents=True, exist_ok=True)

    def runtime_root(self, name: str) -> str:
        return str(self.root / "runtime" / name)

    def dir(self, container_id: str) -> Path:
        if not ID_PATTERN.match(container_id):
            raise ContainerError(f"invalid container id {container_id!r}")
        return self.containers / container_id

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.containers.iterdir()
                      if p.is_dir() and ID_PATTERN.match(p.name))

    def load(self, container_id: str) -> ContainerRecord | None:
        try:
            data: dict[str, Any] = json.loads((self.dir(container_id) / "record.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ContainerError(f"container {container_id}: unreadable record: {exc}") from exc
        return ContainerRecord(**data)

    def save(self, record: ContainerRecord) -> None:
        path = self.dir(record.id) / "record.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)
