"""Status conditions, set the Kubernetes way, by every reconciler.

:func:`set_condition` returns a new list (never mutates what it was given,
which may come from a cache) and whether anything changed, so callers
write status only when it did. ``lastTransitionTime`` moves only when
``status`` flips; a new reason or message alone is a change that keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JSON = dict[str, Any]


def find_condition(conditions: Sequence[JSON] | None, type_: str) -> JSON | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def set_condition(conditions: Sequence[JSON] | None, *, type: str, status: str, reason: str,
                  message: str, now: str,
                  observed_generation: int | None = None) -> tuple[list[JSON], bool]:
    """``conditions`` with ``type`` set; ``(new_list, changed)``."""
    assert status in ("True", "False", "Unknown"), f"bad condition status {status!r}"
    out: list[JSON] = []
    changed = True
    found = False
    for cond in conditions or ():
        if cond.get("type") != type:
            out.append(cond)
            continue
        found = True
        new = dict(cond)
        new.update(status=status, reason=reason, message=message)
        if observed_generation is not None:
            new["observedGeneration"] = observed_generation
        if cond.get("status") != status or not cond.get("lastTransitionTime"):
            new["lastTransitionTime"] = now
        changed = new != cond
        out.append(new)
    if not found:
        new = {"type": type, "status": status, "lastTransitionTime": now,
               "reason": reason, "message": message}
        if observed_generation is not None:
            new["observedGeneration"] = observed_generation
        out.append(new)
    return out, changed
