"""Batches of ``ip`` (iproute2) commands, for the per-pod set-up and teardown.

A pod's namespace, veth pair, address and route are made by two ``ip
-batch`` runs (one on the host, one inside the pod's namespace) instead of
pyroute2 sockets: pyroute2 0.9 opens an event loop per socket and forks a
helper process for every namespace it enters or creates, which cost the
agent most of its CPU per pod, and closing those helpers' descriptors from
many threads at once closed descriptors other threads had just opened
(EBADF in the IPAM's fsync, EINVAL on netlink). ``ip`` runs in its own
process; the caller's thread only waits. Called (in worker threads) by
:mod:`.pods`; errors become :class:`~kubevisor.runtime.errors.NetworkError`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from kubevisor.runtime.errors import NetworkError

TIMEOUT_SECONDS = 30.0


def ip_binary() -> str:
    found = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise NetworkError("the ip command (iproute2) is not installed")
    return found


def run_batch(commands: Sequence[str], *, netns: str | None = None,
              force: bool = False) -> None:
    """Run ``commands`` (one ``ip`` command each, without the leading
    ``ip``) in one ``ip -batch``, inside the named namespace when given.
    Stops at the first failure and raises it, unless ``force`` (then every
    command runs and failures are ignored)."""
    argv = [ip_binary()]
    if netns:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    try:
        proc = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True,
                              text=True, timeout=TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"ip -batch{f' in {netns}' if netns else ''}: {exc}") from exc
    if proc.returncode != 0 and not force:
        why = (proc.stderr or proc.stdout).strip().replace("\n", "; ")
        raise NetworkError(f"ip{f' -n {netns}' if netns else ''}: {why}")
