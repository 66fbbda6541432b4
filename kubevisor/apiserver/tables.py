"""Server-side printing: ``meta.k8s.io/v1`` Table responses for ``kubectl get``.

Columns are NAME followed by the kind's printer columns (NAME and AGE when a
kind declares none); AGE-like ``date`` columns are rendered here as
kubectl's short durations. Each row carries the object as
PartialObjectMetadata (``includeObject=Metadata``, the default), the full
object (``Object``) or nothing (``None``). Called by get, list and watch.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from kubevisor.api import printers
from kubevisor.api.kinds import PrinterColumn, ResourceType
from kubevisor.api.meta import human_duration, parse_rfc3339
from kubevisor.apiserver import errors
from kubevisor.apiserver.http import Output, Request, Response, dump

JSON = dict[str, Any]


def columns(rt: ResourceType) -> tuple[PrinterColumn, ...]:
    cols = rt.printer_columns or printers.default_columns()[1:]
    return (printers.NAME, *[c for c in cols if c.name.lower() != "name" or c.json_path])


def column_definitions(rt: ResourceType) -> list[JSON]:
    return [{"name": c.name, "type": c.type, "format": c.format, "description": c.description,
             "priority": c.priority} for c in columns(rt)]


def _json_path(obj: JSON, path: str) -> Any:
    try:
        from kubevisor.api import jsonpath  # type: ignore[attr-defined]
    except ImportError:
        jsonpath = None
    if jsonpath is not None and hasattr(jsonpath, "evaluate"):
        try:
            return jsonpath.evaluate(path, obj)
        except Exception:  # a column that fails to evaluate prints empty, as kubectl does
            return None
    cur: Any = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        if isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
        if cur is None:
            return None
    return cur


def _age(value: Any, now: float) -> Any:
    if not isinstance(value, str) or not value:
        return "<unknown>"
    try:
        moment = parse_rfc3339(value)
    except ValueError:
        return value
    return human_duration(now - moment.timestamp())


def cell(col: PrinterColumn, obj: JSON, now: float) -> Any:
    if col is printers.NAME:
        return obj["metadata"].get("name", "")
    if col.func is not None:
        try:
            value = col.func(obj)
        except Exception:  # a printer bug must not fail the whole list
            value = None
    else:
        value = _json_path(obj, col.json_path)
    if col.type == "date":
        return _age(value, now) if value is not None else None
    if isinstance(value, datetime):
        return human_duration(now - value.timestamp())
    if isinstance(value, (dict, list)):
        import orjson

        return orjson.dumps(value).decode()
    return value


def include_object(req: Request) -> str:
    mode = req.query.get("includeObject", "") or "Metadata"
    if mode not in ("None", "Metadata", "Object"):
        raise errors.bad_request(f'includeObject "{mode}" is not supported')
    return mode


def row(rt: ResourceType, obj: JSON, cols: tuple[PrinterColumn, ...], mode: str, now: float) -> JSON:
    out: JSON = {"cells": [cell(c, obj, now) for c in cols]}
    if mode == "Metadata":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj["metadata"]}
    elif mode == "Object":
        out["object"] = obj
    return out


def table(rt: ResourceType, objs: list[JSON], req: Request, out: Output, *,
          list_meta: JSON, headers: bool = True) -> JSON:
    mode = include_object(req)
    cols = columns(rt)
    now = time.time()
    result: JSON = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{out.table_version}",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(rt) if headers else [],
        "rows": [row(rt, o, cols, mode, now) for o in objs],
    }
    return result


def table_response(rt: ResourceType, objs: list[JSON], req: Request, out: Output, *,
                   list_meta: JSON) -> Response:
    if len(objs) == 1 and not list_meta:
        list_meta = {"resourceVersion": objs[0]["metadata"].get("resourceVersion", "")}
    return Response(200, dump(table(rt, objs, req, out, list_meta=list_meta)))
