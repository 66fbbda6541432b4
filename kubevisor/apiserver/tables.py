"""Server-side printing: ``meta.k8s.io/v1`` Table responses for ``kubectl get``.

Columns and cells come from ``api.printers`` (the kind's printer columns,
NAME and AGE when it declares none; ages computed at response time). Each row carries the object as
PartialObjectMetadata (``includeObject=Metadata``, the default), the full
object (``Object``) or nothing (``None``). Called by get, list and watch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubevisor.api import printers
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors
from kubevisor.apiserver.http import Output, Request, Response, dump

JSON = dict[str, Any]


def include_object(req: Request) -> str:
    mode = req.query.get("includeObject", "") or "Metadata"
    if mode not in ("None", "Metadata", "Object"):
        raise errors.bad_request(f'includeObject "{mode}" is not supported')
    return mode


def row(rt: ResourceType, obj: JSON, mode: str, now: datetime) -> JSON:
    out: JSON = {"cells": printers.table_cells(rt, obj, now)}
    if mode == "Metadata":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj["metadata"]}
    elif mode == "Object":
        out["object"] = obj
    return out


def table(rt: ResourceType, objs: list[JSON], req: Request, out: Output, *,
          list_meta: JSON, headers: bool = True) -> JSON:
    mode = include_object(req)
    now = datetime.now(UTC)
    result: JSON = {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{out.table_version}",
        "metadata": list_meta,
        "columnDefinitions": printers.table_columns(rt) if headers else [],
        "rows": [row(rt, o, mode, now) for o in objs],
    }
    return result


def table_response(rt: ResourceType, objs: list[JSON], req: Request, out: Output, *,
                   list_meta: JSON) -> Response:
    if len(objs) == 1 and not list_meta:
        list_meta = {"resourceVersion": objs[0]["metadata"].get("resourceVersion", "")}
    return Response(200, dump(table(rt, objs, req, out, list_meta=list_meta)))
