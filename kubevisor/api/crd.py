"""CustomResourceDefinitions: their validation and the kinds they define.

``validate_crd`` applies kube-apiserver's rules for a CRD object (names,
group, scope, versions with exactly one storage version, structural
schemas, subresources, printer columns); ``resource_types`` turns an
accepted CRD into one :class:`ResourceType` per served version, which the
apiserver adds to its Registry so the new kind is served at once;
``accepted_status`` is the status kube-apiserver writes once the names are
accepted. Called by the apiserver (CRD create/update/delete and start-up).
"""

from __future__ import annotations

from typing import Any

from kubevisor.api.fielderrors import (
    DUPLICATE,
    FieldError,
    GoRepr,
    invalid,
    not_supported,
    required,
)
from kubevisor.api.kinds import JSON, PrinterColumn, ResourceType, ScaleSubresource
from kubevisor.api.meta import dns1035_label_errors, dns1123_subdomain_errors
from kubevisor.api.validation import validate_schema

_SCOPES = ["Cluster", "Namespaced"]
_COLUMN_TYPES = ["integer", "number", "string", "boolean", "date"]
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _names_errors(names: Any) -> list[FieldError]:
    if not isinstance(names, dict):
        return [required("spec.names.plural"), required("spec.names.kind")]
    errs: list[FieldError] = []
    plural = names.get("plural")
    if not plural:
        errs.append(required("spec.names.plural"))
    else:
        errs.extend(invalid("spec.names.plural", plural, m) for m in dns1035_label_errors(plural))
    singular = names.get("singular")
    if singular:
        errs.extend(invalid("spec.names.singular", singular, m) for m in dns1035_label_errors(singular))
    kind = names.get("kind")
    if not kind:
        errs.append(required("spec.names.kind"))
    elif dns1035_label_errors(kind.lower()):
        errs.append(invalid("spec.names.kind", kind, "may have mixed case, but should "
                            "otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?"))
    list_kind = names.get("listKind")
    if list_kind and list_kind == kind:
        errs.append(invalid("spec.names.listKind", list_kind, "kind and listKind may not be "
                            "the same"))
    for i, short in enumerate(_list(names.get("shortNames"))):
        errs.extend(invalid(f"spec.names.shortNames[{i}]", short, m) for m in dns1035_label_errors(short))
    for i, cat in enumerate(_list(names.get("categories"))):
        errs.extend(invalid(f"spec.names.categories[{i}]", cat, m) for m in dns1035_label_errors(cat))
    return errs


def _structural_errors(schema: Any, path: str, *, root: bool = False,
                       items: bool = False) -> list[FieldError]:
    """The structural-schema rules that users trip over: every specified
    field has a type (unless it preserves unknown fields or is
    int-or-string), the root is an object, metadata at the root only
    restricts name/generateName."""
    if not isinstance(schema, dict):
        return [invalid(path, schema, "must be an object")]
    errs: list[FieldError] = []
    typ = schema.get("type")
    free = schema.get("x-kubernetes-preserve-unknown-fields") or \
        schema.get("x-kubernetes-int-or-string")
    if root:
        if not typ:
            errs.append(required(path + ".type", "must not be empty at the root"))
        elif typ != "object":
            errs.append(invalid(path + ".type", typ, "must be object at the root"))
    elif not typ and not free:
        errs.append(required(path + ".type", "must not be empty for specified array items"
                             if items else "must not be empty for specified object fields"))
    if typ is not None and typ not in _TYPES:
        errs.append(not_supported(path + ".type", typ, sorted(_TYPES)))
    if schema.get("uniqueItems") is True:
        errs.append(FieldError("FieldValueForbidden", path + ".uniqueItems", None,
                               "uniqueItems cannot be set to true since the runtime complexity "
                               "becomes quadratic"))
    if "default" in schema and not root:
        bare = {k: v for k, v in schema.items() if k != "default"}
        errs.extend(validate_schema(bare, schema["default"], path=path + ".default"))
    if schema.get("additionalProperties") is False:
        errs.append(FieldError("FieldValueForbidden", path + ".additionalProperties", None,
                               "must not be used in structural schemas"))
    props = schema.get("properties") or {}
    if props and schema.get("additionalProperties") not in (None, False):
        errs.append(FieldError("FieldValueForbidden", path + ".additionalProperties", None,
                               "additionalProperties and properties are mutual exclusive"))
    for name, sub in props.items():
        if root and name == "metadata" and isinstance(sub, dict):
            extra = set(sub.get("properties") or {}) - {"name", "generateName"}
            if extra:
                errs.append(FieldError("FieldValueForbidden", f"{path}.properties[metadata]",
                                       None, "must not specify anything other than name and "
                                       "generateName, but metadata is implicitly specified"))
        errs.extend(_structural_errors(sub, f"{path}.properties[{name}]"))
    item_schema = schema.get("items")
    if isinstance(item_schema, dict):
        errs.extend(_structural_errors(item_schema, path + ".items", items=True))
    elif typ == "array" and item_schema is None:
        errs.append(required(path + ".items", "must be specified"))
    add = schema.get("additionalProperties")
    if isinstance(add, dict):
        errs.extend(_structural_errors(add, path + ".additionalProperties"))
    return errs


def _version_errors(version: Any, path: str) -> list[FieldError]:
    if not isinstance(version, dict):
        return [invalid(path, version, "must be an object")]
    errs: list[FieldError] = []
    name = version.get("name")
    if not name:
        errs.append(required(path + ".name"))
    else:
        errs.extend(invalid(path + ".name", name, m) for m in dns1035_label_errors(name))
    schema = _dict(version.get("schema")).get("openAPIV3Schema")
    spath = path + ".schema.openAPIV3Schema"
    if schema is None:
        errs.append(required(spath, "schemas are required"))
    else:
        errs.extend(_structural_errors(schema, spath, root=True))
    sub = version.get("subresources") or {}
    scale = sub.get("scale")
    if isinstance(scale, dict):
        for key in ("specReplicasPath", "statusReplicasPath"):
            value = scale.get(key)
            if not value:
                errs.append(required(f"{path}.subresources.scale.{key}"))
            elif not str(value).startswith("."):
                errs.append(invalid(f"{path}.subresources.scale.{key}", value,
                                    "should be a json path under .spec or .status"))
    fields = version.get("selectableFields") or ()
    if len(fields) > 8:
        errs.append(FieldError("FieldValueTooMany", path + ".selectableFields", len(fields),
                               "must have at most 8 items"))
    for i, selectable in enumerate(fields):
        json_path = selectable.get("jsonPath") if isinstance(selectable, dict) else None
        if not json_path:
            errs.append(required(f"{path}.selectableFields[{i}].jsonPath"))
        elif not str(json_path).startswith("."):
            errs.append(invalid(f"{path}.selectableFields[{i}].jsonPath", json_path,
                                "must be a simple json path starting with ."))
    for i, col in enumerate(_list(version.get("additionalPrinterColumns"))):
        cpath = f"{path}.additionalPrinterColumns[{i}]"
        if not isinstance(col, dict):
            continue
        for key in ("name", "type", "jsonPath"):
            if not col.get(key):
                errs.append(required(f"{cpath}.{key}"))
        if col.get("type") and col["type"] not in _COLUMN_TYPES:
            errs.append(not_supported(cpath + ".type", col["type"], _COLUMN_TYPES))
    return errs


_CRD_SCHEMA = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"


def validate_crd(obj: JSON) -> list[FieldError]:
    """kube-apiserver's rules for a CustomResourceDefinition object. The
    rules assume the CRD schema's shapes; an object of other shapes gets
    its schema errors instead."""
    try:
        return _validate_crd(obj)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):
        from kubevisor.api import schemas

        errs = validate_schema(schemas.component(_CRD_SCHEMA), obj, builtin=True)
        if not errs:
            raise
        return errs


def _validate_crd(obj: JSON) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    group = spec.get("group")
    names = spec.get("names") or {}
    if not group:
        errs.append(required("spec.group"))
    elif "." not in group:
        errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    else:
        errs.extend(invalid("spec.group", group, m) for m in dns1123_subdomain_errors(group))
    name = _dict(obj.get("metadata")).get("name")
    if group and isinstance(names, dict) and names.get("plural") and \
            name != f"{names['plural']}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if isinstance(group, str) and (group == "k8s.io" or group.endswith(".k8s.io") or
                                   group == "kubernetes.io" or group.endswith(".kubernetes.io")):
        annotations = _dict(obj.get("metadata")).get("annotations") or {}
        if not annotations.get("api-approved.kubernetes.io"):
            errs.append(required("metadata.annotations[api-approved.kubernetes.io]",
                                 'protected groups must have approval annotation '
                                 '"api-approved.kubernetes.io", see '
                                 "https://github.com/kubernetes/enhancements/pull/1111"))
    errs.extend(_names_errors(spec.get("names")))
    scope = spec.get("scope")
    if not scope:
        errs.append(required("spec.scope"))
    elif scope not in _SCOPES:
        errs.append(not_supported("spec.scope", scope, _SCOPES))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        errs.append(invalid("spec.versions", GoRepr("[]apiextensions.CustomResourceDefinitionVersion(nil)"),
                            "must have exactly one version marked as storage version"))
        return errs
    seen: set[str] = set()
    storage = 0
    for i, version in enumerate(versions):
        path = f"spec.versions[{i}]"
        errs.extend(_version_errors(version, path))
        if isinstance(version, dict):
            vname = version.get("name")
            if vname in seen:
                errs.append(FieldError(DUPLICATE, path + ".name", vname))
            seen.add(vname)
            storage += 1 if version.get("storage") else 0
    if storage != 1:
        errs.append(invalid("spec.versions", GoRepr(
            "[]apiextensions.CustomResourceDefinitionVersion{...}"),
            "must have exactly one version marked as storage version"))
    if not any(isinstance(v, dict) and v.get("served") for v in versions):
        errs.append(invalid("spec.versions", GoRepr(
            "[]apiextensions.CustomResourceDefinitionVersion{...}"),
            "must have at least one version marked as served"))
    return errs


def _columns(version: JSON) -> tuple[PrinterColumn, ...]:
    return tuple(
        PrinterColumn(
            name=col["name"],
            type=col.get("type", "string"),
            format=col.get("format", ""),
            description=col.get("description", ""),
            priority=int(col.get("priority") or 0),
            json_path=col["jsonPath"],
        )
        for col in _list(version.get("additionalPrinterColumns"))
        if isinstance(col, dict) and col.get("name") and col.get("jsonPath")
    )


def resource_types(crd: JSON) -> list[ResourceType]:
    """One ResourceType per served version of an (accepted) CRD."""
    from kubevisor.api import defaults, printers

    spec = crd["spec"]
    names = spec["names"]
    out: list[ResourceType] = []
    for version in spec.get("versions") or ():
        if not version.get("served"):
            continue
        sub = version.get("subresources") or {}
        scale = sub.get("scale")
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        out.append(ResourceType(
            group=spec["group"],
            version=version["name"],
            kind=names["kind"],
            plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope") == "Namespaced",
            short_names=tuple(_list(names.get("shortNames"))),
            categories=tuple(_list(names.get("categories"))),
            has_status="status" in sub,
            scale=ScaleSubresource(
                spec_replicas_path=scale["specReplicasPath"],
                status_replicas_path=scale["statusReplicasPath"],
                label_selector_path=scale.get("labelSelectorPath"),
            ) if isinstance(scale, dict) else None,
            printer_columns=printers.custom_columns(_columns(version)),
            selectable_fields=tuple(
                str(f["jsonPath"]).lstrip(".") for f in version.get("selectableFields") or ()
                if isinstance(f, dict) and f.get("jsonPath")),
            schema=schema,
            storage=bool(version.get("storage")),
            served=True,
            custom=True,
            defaulter=defaults.schema_defaulter(schema),
        ))
    return out


def accepted_status(crd: JSON, now: str) -> JSON:
    """The status kube-apiserver gives a CRD whose names are accepted:
    acceptedNames, NamesAccepted and Established conditions, storedVersions.
    ``now`` is an RFC 3339 timestamp for lastTransitionTime."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    old = crd.get("status") or {}
    stored = list(old.get("storedVersions") or [])
    for version in spec.get("versions") or ():
        if version.get("storage") and version["name"] not in stored:
            stored.append(version["name"])
    previous = {c.get("type"): c for c in old.get("conditions") or ()}

    def condition(typ: str, reason: str, message: str) -> JSON:
        prior = previous.get(typ)
        since = prior["lastTransitionTime"] if prior and prior.get("status") == "True" else now
        return {"type": typ, "status": "True", "lastTransitionTime": since, "reason": reason,
                "message": message}

    return {
        "acceptedNames": names,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been "
                      "accepted"),
        ],
        "storedVersions": stored,
    }
