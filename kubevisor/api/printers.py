"""Table columns for the built-in kinds, as ``kubectl get`` shows them.

The contract of a kind's ``printer_columns``: every column of its Table in
order, the Name column included (a kind without columns gets
``default_columns()``: Name and Age). A column computes its cell either
with ``json_path`` (CRD semantics: the first match converted to the
column's type; a ``date`` column shows the age of the timestamp, e.g.
``5m``) or with ``func(obj)``, a function of the object returning the
final cell — str, int, float, bool or None — already rendered (ages such as
``5m`` or ``2 (5m ago)`` are computed against the rendering clock:
``table_cells``' ``now``, else the wall clock). The apiserver builds Tables
with ``table_columns(rt)`` and ``table_cells(rt, obj, now)``. Called by
``api.builtin``, ``api.crd`` and the apiserver.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from kubevisor.api import jsonpath
from kubevisor.api.kinds import JSON, PrinterColumn, ResourceType

# The time Table cells are rendered at (set by table_cells; else the wall clock).
_NOW: ContextVar[datetime | None] = ContextVar("printers_now", default=None)


def _now() -> datetime:
    return _NOW.get() or datetime.now(UTC)


def since(timestamp: Any) -> str:
    """The age of a timestamp at rendering time (``5m``), for built-in columns."""
    return age(timestamp, _now())

# ---------------------------------------------------------------------------
# Time


def human_duration(seconds: float) -> str:
    """Go's ``duration.HumanDuration``: 45s, 3m20s, 15m, 5h10m, 3d4h, 2y10d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(timestamp: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (None if absent or bad)."""
    if not isinstance(timestamp, str) or not timestamp:
        return None
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(timestamp: Any, now: datetime) -> str:
    """``translateTimestampSince``: ``<unknown>`` for no timestamp."""
    parsed = parse_time(timestamp)
    if parsed is None:
        return "<unknown>" if not timestamp else "<invalid>"
    return human_duration((now - parsed).total_seconds())


# ---------------------------------------------------------------------------
# Rendering


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


NAME = PrinterColumn(name="Name", type="string", format="name",
                     description="Name must be unique within a namespace. Is required when "
                     "creating resources, although some resources may allow a client to request "
                     "the generation of an appropriate name automatically.",
                     func=lambda o: _meta(o).get("name", ""))
AGE = PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp",
                    description="CreationTimestamp is a timestamp representing the server time "
                    "when this object was created. It is not guaranteed to be set in "
                    "happens-before order across separate operations. Clients may not set this "
                    "value. It is represented in RFC3339 form and is in UTC.")
# Built-in kinds' Age: already rendered. kube-apiserver's default converter's
# Created At: the creation time itself, in RFC 3339.
BUILTIN_AGE = PrinterColumn(name="Age", type="string", description=AGE.description,
                            func=lambda o: since(_meta(o).get("creationTimestamp")))
CREATED_AT = PrinterColumn(name="Created At", type="string", description=AGE.description,
                           func=lambda o: _meta(o).get("creationTimestamp"))


def default_columns() -> tuple[PrinterColumn, ...]:
    """Name and Age, for kinds that declare no columns (as for a CRD
    without additionalPrinterColumns)."""
    return (NAME, AGE)


def table_columns(rt: ResourceType) -> list[JSON]:
    """The Table's ``columnDefinitions`` for a kind."""
    return [
        {"name": c.name, "type": c.type, "format": c.format, "description": c.description,
         "priority": c.priority}
        for c in (rt.printer_columns or default_columns())
    ]


def _cell(column: PrinterColumn, obj: JSON, now: datetime) -> Any:
    if column.func is not None:
        try:
            value = column.func(obj)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return None
    else:
        try:
            found = jsonpath.evaluate(obj, column.json_path)
        except jsonpath.JSONPathError:
            return None
        return jsonpath.format_cell(column.type, found, human_age=lambda ts: age(ts, now))
    return value


def table_cells(rt: ResourceType, obj: JSON, now: datetime) -> list[Any]:
    """One Table row's cells for ``obj``, in ``table_columns`` order; ages
    are computed against ``now`` (an aware datetime)."""
    token = _NOW.set(now)
    try:
        return [_cell(c, obj, now) for c in (rt.printer_columns or default_columns())]
    finally:
        _NOW.reset(token)


# ---------------------------------------------------------------------------
# Shared helpers (also used by api.columns)


def format_selector(selector: Any) -> str:
    """A LabelSelector (or a plain map) as kubectl prints it: ``app=web,tier in (a,b)``."""
    if not isinstance(selector, dict) or not selector:
        return "<none>"
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) if parts else "<none>"


def columns_for(group: str, kind: str) -> tuple[PrinterColumn, ...]:
    """Every Table column of a built-in kind (empty: use default_columns())."""
    from kubevisor.api import columns

    return columns.BUILTIN.get((group, kind), ())


def custom_columns(columns: tuple[PrinterColumn, ...]) -> tuple[PrinterColumn, ...]:
    """A CRD version's columns: Name, then its additionalPrinterColumns, or
    Name and Age if it declares none (kube-apiserver's CRD behaviour)."""
    return (NAME, *columns) if columns else default_columns()

