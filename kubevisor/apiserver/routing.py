"""Turns a Kubernetes API path into a :class:`RequestInfo`, as kube-apiserver's
RequestInfoFactory does, by splitting on ``/`` (Kubernetes paths are regular).

``/api/v1/namespaces/ns/pods/x/status`` → group "", version v1, namespace
ns, resource pods, name x, subresource status. The legacy
``/api/v1/watch/...`` prefix sets ``watch``. Paths outside ``/api`` and
``/apis`` get ``kind`` "other". Called by the app for every request.
"""

from __future__ import annotations

from dataclasses import dataclass

# Subresources of a namespace that follow its name directly.
_NAMESPACE_SUBRESOURCES = frozenset(("status", "finalize"))


@dataclass(frozen=True, slots=True)
class RequestInfo:
    kind: str  # "resource", "api-root" (/api, /apis), "group" (/apis/g), "group-version", "other"
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    watch: bool = False  # legacy /watch/ path
    legacy: bool = True  # under /api (core) rather than /apis


OTHER = RequestInfo("other")


def parse_path(path: str) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return OTHER
    if parts[0] == "api":
        if len(parts) == 1:
            return RequestInfo("api-root", legacy=True)
        group, version, rest = "", parts[1], parts[2:]
        legacy = True
    else:
        if len(parts) == 1:
            return RequestInfo("api-root", legacy=False)
        if len(parts) == 2:
            return RequestInfo("group", group=parts[1], legacy=False)
        group, version, rest = parts[1], parts[2], parts[3:]
        legacy = False
    if not rest:
        return RequestInfo("group-version", group=group, version=version, legacy=legacy)
    watch = False
    if rest[0] == "watch":
        watch = True
        rest = rest[1:]
        if not rest:
            return OTHER
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if len(rest) > 3:
        return OTHER
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    return RequestInfo(
        "resource", group=group, version=version, namespace=namespace, resource=resource,
        name=name, subresource=sub, watch=watch, legacy=legacy,
    )
