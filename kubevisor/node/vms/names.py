"""Host names and identities derived from a VM's uid (the contract of
issue 4): NIC MACs ``52:54:00:`` + 3 bytes of sha256(``<uid>/<i>``), taps
``kvt`` + 12 hex digits of the same hash, a stable SMBIOS UUID (biosUUID)
and instance UUID. Pure; used by the VM worker and the tests.
"""

from __future__ import annotations

import hashlib
import uuid

#: The namespace of the UUIDs derived from VM uids (a fixed random UUID).
_UUID_NS = uuid.UUID("5b0f2a4e-8d1c-4c7e-9a53-6f1e2d3c4b5a")


def _nic_hash(uid: str, index: int) -> str:
    return hashlib.sha256(f"{uid}/{index}".encode()).hexdigest()


def mac(uid: str, index: int) -> str:
    digest = _nic_hash(uid, index)
    return "52:54:00:" + ":".join(digest[i:i + 2] for i in (0, 2, 4))


def tap(uid: str, index: int) -> str:
    return "kvt" + _nic_hash(uid, index)[:12]


def bios_uuid(uid: str) -> str:
    """The SMBIOS system UUID the guest sees, stable for the VM's life."""
    return str(uuid.uuid5(_UUID_NS, f"bios/{uid}"))


def instance_uuid(uid: str) -> str:
    return str(uuid.uuid5(_UUID_NS, f"instance/{uid}"))
