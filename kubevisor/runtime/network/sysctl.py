"""Reading and writing the kernel's network sysctls (``/proc/sys``).

Called by the bridge set-up (forwarding, bridged traffic through the IP
hooks, loopback DNAT) and by capability detection.
"""

from __future__ import annotations

from pathlib import Path

from kubevisor.runtime.errors import NetworkError

_ROOT = Path("/proc/sys")


def _path(key: str) -> Path:
    return _ROOT / key.replace(".", "/")


def read(key: str) -> str | None:
    """The value of ``key`` (dotted, as ``sysctl`` writes it), or None when absent."""
    try:
        return _path(key).read_text().strip()
    except FileNotFoundError:
        return None


def ensure(key: str, value: str) -> None:
    """Set ``key`` to ``value`` unless it already is; NetworkError when it can't."""
    if read(key) == value:
        return
    try:
        _path(key).write_text(value)
    except OSError as exc:
        raise NetworkError(f"cannot set sysctl {key}={value}: {exc}") from exc
