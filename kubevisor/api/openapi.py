"""OpenAPI v3 documents generated from the registry, as kube-apiserver serves them.

``/openapi/v3`` lists one document per group-version; each document has
the resource paths (list/create/deletecollection, read/replace/patch/delete,
status, scale) with kube-apiserver's operation extensions
(``x-kubernetes-action``, ``x-kubernetes-group-version-kind``) and query
parameters — PATCH carries ``fieldValidation``, which kubectl's
QueryParamVerifierV3 looks for before it sends ``--validate=strict`` to the
server — and ``components.schemas`` with every kind's schema and what it
refers to, so ``kubectl explain`` works for built-ins and custom
resources. Documents are cached by a fingerprint of the group-version's
kinds. Called by the apiserver per request.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from typing import Any

import orjson

from kubevisor.api import schemas
from kubevisor.api.kinds import JSON, Registry, ResourceType

OPENAPI_VERSION = "3.0.0"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_STATUS = _META + "Status"
_DELETE_OPTIONS = _META + "DeleteOptions"
_PATCH = _META + "Patch"
_RESOURCE_LIST = _META + "APIResourceList"
_SCALE = "io.k8s.api.autoscaling.v1.Scale"
_SCALE_GVK = {"group": "autoscaling", "kind": "Scale", "version": "v1"}

_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _query(name: str, typ: str, description: str) -> JSON:
    return {"name": name, "in": "query", "description": description,
            "schema": {"type": typ, "uniqueItems": True}}


_PRETTY = _query("pretty", "string", "If 'true', then the output is pretty printed. Defaults to "
                 "'false' unless the user-agent indicates a browser or command-line HTTP tool "
                 "(curl and wget).")
_DRY_RUN = _query("dryRun", "string", "When present, indicates that modifications should not be "
                  "persisted. An invalid or unrecognized dryRun directive will result in an error "
                  "response and no further processing of the request. Valid values are: - All: "
                  "all dry run stages will be processed")
_FIELD_MANAGER = _query("fieldManager", "string", "fieldManager is a name associated with the "
                        "actor or entity that is making these changes. The value must be less "
                        "than or 128 characters long, and only contain printable characters, as "
                        "defined by https://golang.org/pkg/unicode/#IsPrint.")
_FIELD_VALIDATION = _query("fieldValidation", "string", "fieldValidation instructs the server on "
                           "how to handle objects in the request (POST/PUT/PATCH) containing "
                           "unknown or duplicate fields. Valid values are: - Ignore: This will "
                           "ignore any unknown fields that are silently dropped from the object, "
                           "and will ignore all but the last duplicate field that the decoder "
                           "encounters. - Warn: This will send a warning via the standard "
                           "warning response header for each unknown field that is dropped from "
                           "the object, and for each duplicate field that is encountered. - "
                           "Strict: This will fail the request with a BadRequest error if any "
                           "unknown fields would be dropped from the object, or if any duplicate "
                           "fields are present. The error returned from the server will contain "
                           "all unknown and duplicate fields encountered.")
_FORCE = _query("force", "boolean", "Force is going to \"force\" Apply requests. It means user "
                "will re-acquire conflicting fields owned by other people. Force flag must be "
                "unset for non-apply patch requests.")
_LIST_PARAMS = [
    _query("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with "
           "type \"BOOKMARK\"."),
    _query("continue", "string", "The continue option should be set when retrieving more "
           "results from the server."),
    _query("fieldSelector", "string", "A selector to restrict the list of returned objects by "
           "their fields. Defaults to everything."),
    _query("labelSelector", "string", "A selector to restrict the list of returned objects by "
           "their labels. Defaults to everything."),
    _query("limit", "integer", "limit is a maximum number of responses to return for a list "
           "call."),
    _query("resourceVersion", "string", "resourceVersion sets a constraint on what resource "
           "versions a request may be served from."),
    _query("resourceVersionMatch", "string", "resourceVersionMatch determines how "
           "resourceVersion is applied to list calls."),
    _query("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with "
           "`watch=true`."),
    _query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    _query("watch", "boolean", "Watch for changes to the described resources and return them "
           "as a stream of add, update, and remove notifications."),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _query("gracePeriodSeconds", "integer", "The duration in seconds before the object should "
           "be deleted."),
    _query("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "if set to true, it "
           "will trigger an unsafe deletion of the resource in case the normal deletion flow "
           "fails with a corrupt object error."),
    _query("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
    _query("propagationPolicy", "string", "Whether and how garbage collection will be "
           "performed. Acceptable values are: 'Orphan', 'Foreground', 'Background'."),
]
_NAME_PARAM = {"name": "name", "in": "path", "required": True, "description": "name of the "
               "{kind}", "schema": {"type": "string", "uniqueItems": True}}
_NAMESPACE_PARAM = {"name": "namespace", "in": "path", "required": True, "description":
                    "object name and auth scope, such as for teams and projects",
                    "schema": {"type": "string", "uniqueItems": True}}


def _ref(name: str) -> JSON:
    return {"$ref": schemas.REF_PREFIX + name}


def _content(name: str) -> JSON:
    return {media: {"schema": _ref(name)} for media in ("application/json", "application/yaml")}


def _responses(name: str, *codes: str) -> JSON:
    text = {"200": "OK", "201": "Created", "202": "Accepted"}
    out: JSON = {code: {"description": text[code], "content": _content(name)} for code in codes}
    out["401"] = {"description": "Unauthorized"}
    return out


def _operation_prefix(group: str, version: str) -> str:
    if not group:
        return "CoreV1" if version == "v1" else "Core" + version.capitalize()
    words = group.removesuffix(".k8s.io").replace("-", ".").split(".")
    return "".join(w[:1].upper() + w[1:] for w in words) + version.capitalize()


def _tag(group: str, version: str) -> str:
    if not group:
        return f"core_{version}"
    words = group.removesuffix(".k8s.io").replace("-", ".").split(".")
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:]) + "_" + version


def component_name(rt: ResourceType) -> str:
    """The component schema name of a kind: upstream for built-ins,
    ``<reversed group>.<version>.<Kind>`` for custom resources."""
    if rt.schema_name is not None:
        return rt.schema_name
    reversed_group = ".".join(reversed(rt.group.split("."))) if rt.group else "core"
    return f"{reversed_group}.{rt.version}.{rt.kind}"


def _gvk(rt: ResourceType, kind: str | None = None) -> JSON:
    return {"group": rt.group, "kind": kind or rt.kind, "version": rt.version}


def _custom_schemas(rt: ResourceType) -> dict[str, JSON]:
    """A custom resource's component and list schemas, as kube-apiserver
    publishes them for a CRD version."""
    name = component_name(rt)
    schema = copy.deepcopy(rt.schema) if rt.schema else {"type": "object"}
    schema.setdefault("type", "object")
    props = schema.setdefault("properties", {})
    api_version = schemas.component("io.k8s.api.core.v1.Pod")["properties"]["apiVersion"]
    kind = schemas.component("io.k8s.api.core.v1.Pod")["properties"]["kind"]
    props["apiVersion"] = dict(api_version)
    props["kind"] = dict(kind)
    props["metadata"] = {"allOf": [_ref(schemas.OBJECT_META)],
                         "description": "Standard object's metadata. More info: https://git.k8s."
                         "io/community/contributors/devel/sig-architecture/api-conventions.md"
                         "#metadata"}
    schema["x-kubernetes-group-version-kind"] = [_gvk(rt)]
    list_schema = {
        "description": f"{rt.kind}List is a list of {rt.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": dict(api_version),
            "items": {"description": f"List of {rt.plural.lower()}. More info: "
                      "https://git.k8s.io/community/contributors/devel/sig-architecture/"
                      "api-conventions.md", "type": "array", "items": _ref(name)},
            "kind": dict(kind),
            "metadata": {"allOf": [_ref(_META + "ListMeta")],
                         "description": "Standard list metadata. More info: https://git.k8s.io/"
                         "community/contributors/devel/sig-architecture/api-conventions.md"
                         "#types-kinds"},
        },
        "x-kubernetes-group-version-kind": [_gvk(rt, rt.list_kind)],
    }
    return {name: schema, name + "List": list_schema}


def _paths_for(rt: ResourceType) -> dict[str, JSON]:
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    scoped = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced \
        else f"{prefix}/{rt.plural}"
    op = _operation_prefix(rt.group, rt.version)
    ns_word = "Namespaced" if rt.namespaced else ""
    kind = rt.kind
    name = component_name(rt)
    tags = [_tag(rt.group, rt.version)]
    gvk = _gvk(rt)
    verbs = set(rt.verbs)
    scope_params = [_NAMESPACE_PARAM] if rt.namespaced else []
    name_param = {**_NAME_PARAM, "description": f"name of the {kind}"}

    def operation(action: str, verb: str, description: str, *, params: list[JSON],
                  responses: JSON, body: JSON | None = None, op_gvk: JSON = gvk,
                  suffix: str = "") -> JSON:
        out: JSON = {
            "tags": tags,
            "description": description,
            "operationId": f"{verb}{op}{ns_word}{kind}{suffix}",
            "parameters": params,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": op_gvk,
        }
        if body is not None:
            out["requestBody"] = body
        return out

    def write_body(schema_name: str) -> JSON:
        return {"content": {"*/*": {"schema": _ref(schema_name)}}, "required": True}

    # Custom resources take no strategic merge patch (kubectl then sends merge patches).
    patch_types = [t for t in _PATCH_TYPES if not (rt.custom and "strategic" in t)]
    patch_body = {"content": {t: {"schema": _ref(_PATCH)} for t in patch_types},
                  "required": True}
    paths: dict[str, JSON] = {}

    collection: JSON = {"parameters": [*scope_params, _PRETTY]}
    if "list" in verbs:
        collection["get"] = operation("list", "list", f"list or watch objects of kind {kind}",
                                      params=_LIST_PARAMS, responses=_responses(name + "List",
                                                                                "200"))
    if "create" in verbs:
        collection["post"] = operation(
            "post", "create", f"create a {kind}",
            params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
            responses=_responses(name, "200", "201", "202"), body=write_body(name))
    if "deletecollection" in verbs:
        collection["delete"] = operation(
            "deletecollection", "deleteCollection", f"delete collection of {kind}",
            params=[*_DELETE_PARAMS, *_LIST_PARAMS],
            responses=_responses(_STATUS, "200"), body={"content": {"*/*": {"schema": _ref(
                _DELETE_OPTIONS)}}})
    paths[scoped] = collection

    item: JSON = {"parameters": [name_param, *scope_params, _PRETTY]}
    if "get" in verbs:
        item["get"] = operation("get", "read", f"read the specified {kind}", params=[],
                                responses=_responses(name, "200"))
    if "update" in verbs:
        item["put"] = operation("put", "replace", f"replace the specified {kind}",
                                params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                                responses=_responses(name, "200", "201"), body=write_body(name))
    if "patch" in verbs:
        item["patch"] = operation("patch", "patch", f"partially update the specified {kind}",
                                  params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE],
                                  responses=_responses(name, "200", "201"), body=patch_body)
    if "delete" in verbs:
        item["delete"] = operation("delete", "delete", f"delete a {kind}", params=_DELETE_PARAMS,
                                   responses=_responses(_STATUS, "200", "202"),
                                   body={"content": {"*/*": {"schema": _ref(_DELETE_OPTIONS)}}})
    paths[f"{scoped}/{{name}}"] = item

    subresources: list[tuple[str, str, JSON]] = []
    if rt.has_status:
        subresources.append(("status", name, gvk))
    if rt.scale is not None:
        subresources.append(("scale", _SCALE, _SCALE_GVK))
    for sub, sub_schema, sub_gvk in subresources:
        suffix = sub.capitalize()
        paths[f"{scoped}/{{name}}/{sub}"] = {
            "parameters": [name_param, *scope_params, _PRETTY],
            "get": operation("get", "read", f"read {sub} of the specified {kind}", params=[],
                             responses=_responses(sub_schema, "200"), op_gvk=sub_gvk,
                             suffix=suffix),
            "put": operation("put", "replace", f"replace {sub} of the specified {kind}",
                             params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                             responses=_responses(sub_schema, "200", "201"),
                             body=write_body(sub_schema), op_gvk=sub_gvk, suffix=suffix),
            "patch": operation("patch", "patch", f"partially update {sub} of the specified "
                               f"{kind}", params=[_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION,
                                                  _FORCE],
                               responses=_responses(sub_schema, "200", "201"), body=patch_body,
                               op_gvk=sub_gvk, suffix=suffix),
        }

    if rt.namespaced and "list" in verbs:
        paths[f"{prefix}/{rt.plural}"] = {
            "parameters": [*_LIST_PARAMS, _PRETTY],
            "get": {**operation("list", "list", f"list or watch objects of kind {kind}",
                                params=[], responses=_responses(name + "List", "200")),
                    "operationId": f"list{op}{kind}ForAllNamespaces"},
        }
    return paths


def _fingerprint(types: list[ResourceType]) -> tuple[Any, ...]:
    return tuple(
        (rt.group, rt.version, rt.kind, rt.plural, rt.namespaced, rt.verbs, rt.has_status,
         rt.scale is not None, rt.schema_name, id(rt.schema))
        for rt in types
    )


def _types_of(registry: Registry, group: str, version: str) -> list[ResourceType]:
    found = [rt for rt in registry if rt.group == group and rt.version == version and rt.served]
    return sorted(found, key=lambda rt: rt.plural)


def _build(types: list[ResourceType], group: str, version: str) -> JSON:
    paths: dict[str, JSON] = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths[prefix + "/"] = {"get": {
        "tags": [_tag(group, version)],
        "description": "get available resources",
        "operationId": f"get{_operation_prefix(group, version)}APIResources",
        "responses": _responses(_RESOURCE_LIST, "200"),
    }}
    components: dict[str, JSON] = {}
    roots: list[str] = [_STATUS, _DELETE_OPTIONS, _PATCH, _RESOURCE_LIST]
    for rt in types:
        paths.update(_paths_for(rt))
        if rt.schema_name is None:
            components.update(_custom_schemas(rt))
        else:
            roots.append(rt.schema_name)
            if rt.schema_name + "List" in schemas.component_schemas():
                roots.append(rt.schema_name + "List")
        if rt.scale is not None:
            roots.append(_SCALE)
    all_schemas = schemas.component_schemas()
    names = set(roots)
    for root in list(roots):
        names |= schemas.refs_in(all_schemas[root])
    names |= schemas.refs_in(list(components.values()))
    for schema_name in sorted(names):
        components.setdefault(schema_name, all_schemas[schema_name])
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token "
                                                "authentication", "name": "authorization",
                                                "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    }


class _Cache:
    """Serialized documents by group-version, valid for one fingerprint."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.docs: dict[tuple[str, str], tuple[tuple[Any, ...], list[ResourceType], JSON, bytes,
                                               str]] = {}

    def get(self, registry: Registry, group: str, version: str) -> tuple[JSON, bytes, str]:
        types = _types_of(registry, group, version)
        fp = _fingerprint(types)
        key = (group, version)
        hit = self.docs.get(key)
        if hit is not None and hit[0] == fp:
            return hit[2], hit[3], hit[4]
        doc = _build(types, group, version)
        raw = orjson.dumps(doc)
        digest = hashlib.sha512(raw).hexdigest().upper()
        with self.lock:
            # types are kept so the ids in the fingerprint stay theirs
            self.docs[key] = (fp, types, doc, raw, digest)
        return doc, raw, digest


_CACHE = _Cache()


def group_version_path(group: str, version: str) -> str:
    """The index key of a group-version: ``api/v1`` or ``apis/apps/v1``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_index(registry: Registry) -> JSON:
    """The ``/openapi/v3`` discovery document: every served group-version
    with a ``serverRelativeURL`` carrying a content hash (kubectl caches by it)."""
    paths: JSON = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            _, _, digest = _CACHE.get(registry, group, version)
            key = group_version_path(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": dict(sorted(paths.items()))}


def openapi_v3_document(registry: Registry, group: str, version: str) -> JSON | None:
    """The OpenAPI v3 document of one group-version (None if not served).
    Cached; callers must not mutate it."""
    if not _types_of(registry, group, version):
        return None
    return _CACHE.get(registry, group, version)[0]


def openapi_v3_document_bytes(registry: Registry, group: str, version: str
                              ) -> tuple[bytes, str] | None:
    """The same document already serialized as JSON, with its hash (for
    ETag and the ``hash`` query parameter); None if not served."""
    if not _types_of(registry, group, version):
        return None
    _, raw, digest = _CACHE.get(registry, group, version)
    return raw, digest
