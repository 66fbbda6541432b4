"""The node's pod address allocator: one JSON file under the state dir.

Called by :mod:`.pods` (allocate on set-up, release on teardown, re-adopt on
start). Addresses come from the pod CIDR minus the network address, the
gateway (first address) and the broadcast address. Every operation takes an
``flock`` on a lock file, reads the file, and writes it back atomically
(temporary file, fsync, rename), so two processes or threads never hand out
one address twice and a crash never leaves half a file. Allocation goes
round-robin from the last address handed out, so a released address is not
reused at once (stale conntrack entries, ARP caches).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kubevisor.runtime.errors import NetworkError


@dataclass
class _State:
    cidr: str
    allocations: dict[str, str] = field(default_factory=dict)
    last: str | None = None


class Ipam:
    """File-backed IPv4 allocation by owner (pod id) over ``cidr``."""

    def __init__(self, cidr: str, state_dir: str | os.PathLike[str]) -> None:
        self.network = ipaddress.IPv4Network(cidr, strict=False)
        self.gateway = self.network.network_address + 1
        self._dir = Path(state_dir)
        self.path = self._dir / "ipam.json"
        self._lock_path = self._dir / "ipam.lock"

    # ----------------------------------------------------------- public

    def allocate(self, owner: str) -> ipaddress.IPv4Address:
        """The owner's address, allocating one if it has none; NetworkError
        when the range is exhausted."""
        with self._locked() as state:
            if owner in state.allocations:
                return ipaddress.IPv4Address(state.allocations[owner])
            ip = self._next_free(state)
            state.allocations[owner] = str(ip)
            state.last = str(ip)
            return ip

    def reserve(self, owner: str, ip: str) -> None:
        """Record ``ip`` as the owner's (re-adopting an address found on the
        host); NetworkError when it is outside the range or someone else's."""
        addr = ipaddress.IPv4Address(ip)
        if int(addr) not in self._usable():
            raise NetworkError(f"{ip} is not an allocatable address of {self.network}")
        with self._locked() as state:
            holder = next((o for o, a in state.allocations.items() if a == ip), None)
            if holder not in (None, owner):
                raise NetworkError(f"{ip} is already allocated to {holder}")
            state.allocations[owner] = ip

    def release(self, owner: str) -> ipaddress.IPv4Address | None:
        """Free the owner's address; returns it, or None when it had none."""
        with self._locked() as state:
            ip = state.allocations.pop(owner, None)
        return ipaddress.IPv4Address(ip) if ip else None

    def get(self, owner: str) -> ipaddress.IPv4Address | None:
        ip = self.allocations().get(owner)
        return ipaddress.IPv4Address(ip) if ip else None

    def allocations(self) -> dict[str, str]:
        """owner → address, as the file says now."""
        with self._locked(write=False) as state:
            return dict(state.allocations)

    # ---------------------------------------------------------- private

    def _usable(self) -> range:
        first = int(self.network.network_address) + 2
        last = int(self.network.broadcast_address) - 1
        return range(first, last + 1)

    def _next_free(self, state: _State) -> ipaddress.IPv4Address:
        usable = self._usable()
        taken = {int(ipaddress.IPv4Address(a)) for a in state.allocations.values()}
        start = int(ipaddress.IPv4Address(state.last)) + 1 if state.last else usable.start
        if start not in usable:
            start = usable.start
        for offset in range(len(usable)):
            candidate = usable.start + (start - usable.start + offset) % len(usable)
            if candidate not in taken:
                return ipaddress.IPv4Address(candidate)
        raise NetworkError(f"no free address left in {self.network} ({len(taken)} allocated)")

    @contextmanager
    def _locked(self, *, write: bool = True) -> Iterator[_State]:
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise NetworkError(f"IPAM state dir {self._dir}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._read()
            before = json.dumps(state.__dict__, sort_keys=True)
            yield state
            if write and json.dumps(state.__dict__, sort_keys=True) != before:
                self._write(state)
        finally:
            os.close(fd)  # closing drops the flock

    def _read(self) -> _State:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return _State(cidr=str(self.network))
        except (OSError, ValueError) as exc:
            raise NetworkError(f"IPAM file {self.path} is unreadable: {exc}") from exc
        if raw.get("cidr") != str(self.network) and raw.get("allocations"):
            raise NetworkError(
                f"IPAM file {self.path} is for {raw.get('cidr')}, not {self.network}, "
                f"and still holds {len(raw['allocations'])} allocations")
        return _State(cidr=str(self.network), allocations=dict(raw.get("allocations", {})),
                      last=raw.get("last"))

    def _write(self, state: _State) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        data = json.dumps({"cidr": state.cidr, "allocations": state.allocations,
                           "last": state.last}, indent=1, sort_keys=True).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise NetworkError(f"cannot write IPAM file {self.path}: {exc}") from exc
