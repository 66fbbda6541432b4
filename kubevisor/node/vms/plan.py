"""What to do next for one VM (pure): :func:`plan` compares the
VirtualMachine (spec.powerState and the power modes, spec.nextRestartTime,
deletion) and the spec it should run with to what the driver reports,
and returns the actions in order. The VM worker applies them.

Rules:
- deleting (deletionTimestamp set) or gone from the API: tear everything
  down, nothing else;
- not defined yet, or defined with another spec while not suspended:
  (re)define it (a running VM picks the new spec up at its next start; a
  suspended one keeps the hardware it was saved with until it resumes);
- PoweredOn: start a stopped VM, resume a suspended or paused one; when
  spec.nextRestartTime differs from the last restart carried out, restart
  a running one with restartMode;
- PoweredOff: power a running VM off with powerOffMode; a suspended VM's
  saved state is discarded (what powering off a suspended VM means);
- Suspended: suspend a running VM (to a state file, whatever suspendMode
  says: the only suspend QEMU offers); a VM that is off stays off.
A restart request on a VM that is not running is recorded as carried out
(there is nothing to restart), as upstream ignores it then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubevisor.runtime.qemu.types import PowerOpMode

ON, OFF, SUSPENDED = "PoweredOn", "PoweredOff", "Suspended"
_MODES: dict[str, PowerOpMode] = {"Hard": "hard", "Soft": "soft", "TrySoft": "trysoft"}


@dataclass(frozen=True, slots=True)
class Action:
    kind: Literal["delete", "define", "start", "resume", "power_off", "discard",
                  "suspend", "reboot", "mark_restarted"]
    mode: PowerOpMode = "hard"


def desired_power(vm: Mapping[str, Any]) -> str:
    value = (vm.get("spec") or {}).get("powerState") or ON
    return value if value in (ON, OFF, SUSPENDED) else ON


def mode(vm: Mapping[str, Any], field: str) -> PowerOpMode:
    return _MODES.get(str((vm.get("spec") or {}).get(field) or "TrySoft"), "trysoft")


def power_state(status: str | None) -> str | None:
    """The VM Operator power state of a driver status (None: not defined)."""
    return {"running": ON, "paused": ON, "shutdown": OFF, "suspended": SUSPENDED}.get(status or "")


def restart_requested(vm: Mapping[str, Any], last_restart: str) -> str:
    """spec.nextRestartTime when it asks for a restart not yet carried out, else ""."""
    wanted = str((vm.get("spec") or {}).get("nextRestartTime") or "")
    done = str((vm.get("status") or {}).get("lastRestartTime") or "")
    if not wanted or wanted.lower() == "now" or wanted in (done, last_restart):
        return ""
    return wanted


def plan(vm: Mapping[str, Any] | None, status: str | None, *, desired: str | None,
         defined: str, last_restart: str = "") -> list[Action]:
    """Actions for ``vm`` (None: gone from the API) whose driver status is
    ``status`` (None: not defined). ``desired`` is the hash of the spec it
    should run with (None: it cannot be built now, so nothing is defined or
    started); ``defined`` the hash of the spec it is defined with."""
    if vm is None or (vm.get("metadata") or {}).get("deletionTimestamp"):
        return [Action("delete")]
    actions: list[Action] = []
    want = desired_power(vm)
    if desired is not None and status != "suspended" and (status is None or desired != defined):
        actions.append(Action("define"))
        status = status or "shutdown"
    restart = restart_requested(vm, last_restart)
    if status is None:
        return actions  # nothing defined and nothing to define with
    if want == ON:
        if status == "shutdown" and desired is not None:
            actions.append(Action("start"))
        elif status in ("suspended", "paused"):
            actions.append(Action("resume"))
        elif status == "running" and restart:
            actions.append(Action("reboot", mode(vm, "restartMode")))
            return actions
    elif want == OFF:
        if status in ("running", "paused"):
            actions.append(Action("power_off", mode(vm, "powerOffMode")))
        elif status == "suspended":
            actions.append(Action("discard"))
    elif status in ("running", "paused"):
        actions.append(Action("suspend", mode(vm, "suspendMode")))
    if restart:
        actions.append(Action("mark_restarted"))
    return actions
