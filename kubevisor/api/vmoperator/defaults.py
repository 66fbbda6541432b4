"""Server-side defaults of the VM Operator kinds, as upstream's schema
defaults and mutating webhook give them.

Schema ``default`` values (powerOffMode/suspendMode/restartMode TrySoft,
write_files owner and permissions, ...) are applied by the generic schema
defaulter; on top of that a VirtualMachine gets ``spec.powerState:
PoweredOn`` when it says nothing, and ``spec.nextRestartTime: now`` becomes
the current time (RFC 3339, UTC), which is what asks for a restart. Called
by the apiserver's admission through ``ResourceType.defaulter``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from kubevisor.api import defaults as api_defaults
from kubevisor.api.kinds import JSON

Defaulter = Callable[[JSON], None]
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def restart_time(now: datetime) -> str:
    """``now`` as upstream writes spec.nextRestartTime (RFC 3339 with nanoseconds)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def virtual_machine(obj: JSON, *, clock: Clock = _utc_now) -> None:
    """The VirtualMachine defaults beyond its schema's."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("powerState") in (None, ""):
        spec["powerState"] = "PoweredOn"
    restart = spec.get("nextRestartTime")
    if isinstance(restart, str) and restart.lower() == "now":
        spec["nextRestartTime"] = restart_time(clock())


def defaulter_for(kind: str, schema: JSON) -> Defaulter | None:
    """The defaulter of ``kind`` at the version whose root schema is ``schema``."""
    from_schema = api_defaults.schema_defaulter(schema)
    if kind != "VirtualMachine":
        return from_schema

    def apply(obj: JSON) -> None:
        if from_schema is not None:
            from_schema(obj)
        virtual_machine(obj)

    return apply
