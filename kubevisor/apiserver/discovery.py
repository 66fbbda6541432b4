"""Legacy discovery documents: ``/api``, ``/apis``, ``/apis/<group>`` and the
APIResourceList of each group-version, built from the registry.

kubectl's request for aggregated discovery (``as=APIGroupDiscoveryList``) is
answered with these legacy documents and ``Content-Type:
application/json``, which client-go takes as an older server's answer and
then fetches each group-version list. Documents are cached in the
:class:`Context` until the registry changes. Called by the app.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver.context import Context

JSON = dict[str, Any]

_SUB_VERBS = ["get", "patch", "update"]


def _hash(rt: ResourceType) -> str:
    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    import base64

    return base64.b64encode(digest[:8]).decode()


def _resources(rt: ResourceType) -> list[JSON]:
    main: JSON = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    main["storageVersionHash"] = _hash(rt)
    out = [main]
    if rt.has_status:
        out.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                    "kind": rt.kind, "verbs": list(_SUB_VERBS)})
    if rt.scale is not None:
        out.append({"name": f"{rt.plural}/scale", "singularName": "", "namespaced": rt.namespaced,
                    "group": "autoscaling", "version": "v1", "kind": "Scale",
                    "verbs": list(_SUB_VERBS)})
    if rt.group == "" and rt.kind == "Namespace":
        out.append({"name": "namespaces/finalize", "singularName": "", "namespaced": False,
                    "kind": "Namespace", "verbs": ["update"]})
    if rt.group == "" and rt.kind == "Pod":
        out.extend({"name": f"pods/{sub}", "singularName": "", "namespaced": True,
                    "kind": kind, "verbs": list(verbs)} for sub, kind, verbs in POD_SUBRESOURCES)
    return out


#: The pod subresources served besides status: (name, kind, verbs), as kube lists them.
POD_SUBRESOURCES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("attach", "PodAttachOptions", ("create", "get")),
    ("binding", "Binding", ("create",)),
    ("exec", "PodExecOptions", ("create", "get")),
    ("log", "Pod", ("get",)),
    ("portforward", "PodPortForwardOptions", ("create", "get")),
)


def resource_list(ctx: Context, group: str, version: str) -> bytes | None:
    def build() -> bytes | None:
        gv = f"{group}/{version}" if group else version
        resources: list[JSON] = []
        found = False
        for rt in ctx.registry:
            if rt.group == group and rt.version == version and rt.served:
                found = True
                resources.extend(_resources(rt))
        if not found:
            return None
        return orjson.dumps({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                             "resources": resources})

    cached: bytes = ctx.cached(f"rl:{group}/{version}", lambda: build() or b"")
    return cached or None


_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?\Z")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes' version priority: GA, then beta, then alpha,
    higher numbers first; other names last, alphabetically."""
    m = _VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), version)


def _group(name: str, versions: list[str]) -> JSON:
    versions = sorted(versions, key=version_priority)
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_versions(ctx: Context) -> bytes:
    return ctx.cached("api", lambda: orjson.dumps({
        "kind": "APIVersions",
        "versions": ctx.registry.group_versions().get("", ["v1"]),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }))


def group_list(ctx: Context) -> bytes:
    def build() -> bytes:
        groups = [_group(g, vs) for g, vs in ctx.registry.group_versions().items() if g]
        return orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    return ctx.cached("apis", build)


def group(ctx: Context, name: str) -> bytes | None:
    versions = ctx.registry.group_versions().get(name)
    if not versions or not name:
        return None
    return orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)})


# --- aggregated discovery (apidiscovery.k8s.io/v2) --------------------------

AGGREGATED_VERSIONS = ("v2", "v2beta1")


def wants_aggregated(accept: str) -> str | None:
    """The apidiscovery version the Accept header asks for first, if any
    (kubectl v1.32 lists v2, then v2beta1, then plain JSON)."""
    for entry in accept.split(","):
        parts = [p.strip() for p in entry.split(";")]
        if parts[0].lower() not in ("application/json", "*/*"):
            continue
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if not params:
            return None
        if (params.get("g") == "apidiscovery.k8s.io" and params.get("v") in AGGREGATED_VERSIONS
                and params.get("as") == "APIGroupDiscoveryList"):
            return params["v"]
    return None


def _kind(group: str, version: str, kind: str) -> JSON:
    return {"group": group, "version": version, "kind": kind}


def _discovery_resource(rt: ResourceType) -> JSON:
    res: JSON = {
        "resource": rt.plural,
        "responseKind": _kind(rt.group, rt.version, rt.kind),
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        res["shortNames"] = list(rt.short_names)
    if rt.categories:
        res["categories"] = list(rt.categories)
    subs: list[JSON] = []
    if rt.group == "" and rt.kind == "Namespace":
        subs.append({"subresource": "finalize", "responseKind": _kind("", "v1", "Namespace"),
                     "verbs": ["update"]})
    if rt.scale is not None:
        subs.append({"subresource": "scale",
                     "responseKind": _kind("autoscaling", "v1", "Scale"),
                     "verbs": list(_SUB_VERBS)})
    if rt.has_status:
        subs.append({"subresource": "status",
                     "responseKind": _kind(rt.group, rt.version, rt.kind),
                     "verbs": list(_SUB_VERBS)})
    if rt.group == "" and rt.kind == "Pod":
        subs.extend({"subresource": sub, "responseKind": _kind("", "v1", kind),
                     "verbs": list(verbs)} for sub, kind, verbs in POD_SUBRESOURCES)
    if subs:
        res["subresources"] = subs
    return res


def aggregated(ctx: Context, *, legacy: bool, version: str) -> bytes:
    """``/api`` (legacy) or ``/apis`` as an APIGroupDiscoveryList."""

    def build() -> bytes:
        by_group: dict[str, dict[str, list[JSON]]] = {}
        for rt in ctx.registry:
            if not rt.served or (rt.group == "") != legacy:
                continue
            versions = by_group.setdefault(rt.group, {})
            versions.setdefault(rt.version, []).append(_discovery_resource(rt))
        items = []
        for group, versions in by_group.items():
            meta: JSON = {"creationTimestamp": None}
            if group:
                meta["name"] = group
            items.append({"metadata": meta, "versions": [
                {"version": v, "resources": sorted(versions[v], key=lambda r: r["resource"]),
                 "freshness": "Current"}
                for v in sorted(versions, key=version_priority)]})
        return orjson.dumps({"kind": "APIGroupDiscoveryList",
                             "apiVersion": f"apidiscovery.k8s.io/{version}",
                             "metadata": {}, "items": items})

    body: bytes = ctx.cached(f"agg:{legacy}:{version}", build)
    return body


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
