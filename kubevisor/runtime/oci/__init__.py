"""Containers through an OCI runtime (runc or crun) with conmon as monitor.

The node agent calls :func:`open_runtime` once at start and codes against
the :class:`~kubevisor.runtime.types.ContainerRuntime` it returns.
Modules: ``detect`` (which runtime, which cgroup mode, what is enforced),
``bundle`` (ContainerSpec → config.json, pure), ``runtime`` (the driver),
``conmon``, ``exec``, ``command`` (the runtime's CLI), ``store`` (the state
directory), ``cgroups`` (/proc and /sys/fs/cgroup readers).
"""

from __future__ import annotations

import os

from kubevisor.runtime.oci.detect import Detection, RuntimeProfile, choose, detect
from kubevisor.runtime.oci.runtime import OciRuntime

__all__ = ["Detection", "OciRuntime", "RuntimeProfile", "detect", "open_runtime"]


async def open_runtime(state_dir: str, *, prefer: str | None = None,
                       cgroup_parent: str = "/kubevisor") -> OciRuntime:
    """Detect the runtimes on this host and return a driver for ``prefer``
    (``"runc"`` or ``"crun"``) or, by default, the one enforcing most limits.
    Raises :class:`~kubevisor.runtime.errors.ContainerError` when none works."""
    detection = await detect(os.path.join(state_dir, "detect"), cgroup_parent=cgroup_parent)
    return OciRuntime(state_dir, choose(detection, prefer), cgroup_parent=cgroup_parent)
