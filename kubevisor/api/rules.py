"""The essential hand-written rules kube-apiserver enforces beyond schemas.

Object metadata (names, generateName, label and annotation syntax) for
every kind, and for the built-in kinds the rules users meet first (a Pod
needs containers with a name and an image, a Deployment's selector must
match its template, Service ports are in range, ConfigMap keys are valid).
Messages follow kube-apiserver's wording. Called by ``api.validation``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubevisor.api.fielderrors import (
    DUPLICATE,
    FORBIDDEN,
    NOT_FOUND,
    FieldError,
    GoRepr,
    invalid,
    not_supported,
    required,
)
from kubevisor.api.kinds import JSON, ResourceType
from kubevisor.api.meta import dns1035_label_errors as dns1035_label
from kubevisor.api.meta import dns1123_label_errors as dns1123_label
from kubevisor.api.meta import dns1123_subdomain_errors as dns1123_subdomain
from kubevisor.api.meta import label_value_errors as label_value
from kubevisor.api.meta import qualified_name_errors as qualified_name
from kubevisor.api.quantity import QuantityError, parse_quantity

_CONFIG_KEY_FMT = r"[-._a-zA-Z0-9]+"
_CONFIG_KEY = re.compile(f"^{_CONFIG_KEY_FMT}$")
_CONFIG_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                   "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation "
                   "is '" + _CONFIG_KEY_FMT + "')")


def path_segment_name(value: str) -> list[str]:
    """Problems of a name usable as a URL path segment (RBAC objects)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


_NAME_RULES: dict[tuple[str, str], Callable[[str], list[str]]] = {
    ("", "Namespace"): dns1123_label,
    ("", "Service"): dns1035_label,
    **{("rbac.authorization.k8s.io", k): path_segment_name
       for k in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")},
}

_MAX_ANNOTATIONS = 256 * 1024


def validate_metadata(rt: ResourceType, obj: JSON) -> list[FieldError]:
    """ObjectMeta rules: name or generateName, name syntax, labels, annotations."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required("metadata.name", "name or generateName is required")]
    errs: list[FieldError] = []
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            errs.append(required("metadata.name", "name or generateName is required"))
    elif isinstance(name, str):
        check = _NAME_RULES.get((rt.group, rt.kind), dns1123_subdomain)
        errs.extend(invalid("metadata.name", name, msg) for msg in check(name))
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key, value in labels.items():
            errs.extend(invalid("metadata.labels", key, m) for m in qualified_name(key))
            if isinstance(value, str):
                errs.extend(invalid("metadata.labels", value, m) for m in label_value(value))
    errs.extend(_owner_references(meta.get("ownerReferences"), missing=rt.custom))
    finalizers = meta.get("finalizers")
    for i, finalizer in enumerate(finalizers if isinstance(finalizers, list) else ()):
        if isinstance(finalizer, str):
            errs.extend(invalid(f"metadata.finalizers[{i}]", finalizer, m)
                        for m in qualified_name(finalizer))
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        total = 0
        for key, value in annotations.items():
            errs.extend(invalid("metadata.annotations", key, m) for m in qualified_name(key.lower()))
            total += len(key) + (len(value) if isinstance(value, str) else 0)
        if total > _MAX_ANNOTATIONS:
            errs.append(FieldError("FieldValueTooLong", "metadata.annotations", "",
                                   f"must have at most {_MAX_ANNOTATIONS} bytes"))
    return errs


def _owner_references(refs: Any, *, missing: bool) -> list[FieldError]:
    """``missing``: also report absent keys (built-ins get "Required value"
    for those from the ObjectMeta schema)."""
    if not isinstance(refs, list):
        return []
    errs: list[FieldError] = []
    controllers = []
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        for key, what in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"),
                          ("uid", "uid")):
            if not ref.get(key) and (missing or key in ref):
                errs.append(invalid(f"metadata.ownerReferences.{key}", ref.get(key) or "",
                                    f"{what} must not be empty"))
        if ref.get("controller") is True:
            controllers.append(f'"{ref.get("kind")}/{ref.get("name")}"')
    if len(controllers) > 1:
        errs.append(invalid("metadata.ownerReferences", GoRepr("[]v1.OwnerReference{...}"),
                            "Only one reference can have Controller set to true. Found \"true\" "
                            f"in references for {' and '.join(controllers)}"))
    return errs


# ---------------------------------------------------------------------------
# Built-in kinds

_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_RESTART = ["Always", "OnFailure", "Never"]
_DNS_POLICY = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
_PULL = ["Always", "IfNotPresent", "Never"]
_SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
_SELECTOR_OPS = ["In", "NotIn", "Exists", "DoesNotExist"]
_TOLERATION_OPS = ["Equal", "Exists"]
_TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
_AFFINITY = ["ClientIP", "None"]
_STRATEGIES = ["Recreate", "RollingUpdate"]


def _port_range(path: str, value: Any) -> list[FieldError]:
    if isinstance(value, int) and not 1 <= value <= 65535:
        return [invalid(path, value, "must be between 1 and 65535, inclusive")]
    return []


def _resources(resources: Any, path: str) -> list[FieldError]:
    if not isinstance(resources, dict):
        return []
    errs: list[FieldError] = []
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if not isinstance(limits, dict) or not isinstance(requests, dict):
        return errs
    for name, request in requests.items():
        if name not in limits:
            continue
        try:
            over = parse_quantity(request) > parse_quantity(limits[name])
        except QuantityError:
            continue  # the schema check reports malformed quantities
        if over:
            errs.append(invalid(f"{path}.requests[{name}]", str(request),
                                f"must be less than or equal to {name} limit of {limits[name]}"))
    return errs


def _containers(spec: JSON, path: str, field: str, names: set[str],
                volumes: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    containers = spec.get(field)
    if not isinstance(containers, list):
        return errs
    for i, c in enumerate(containers):
        cpath = f"{path}.{field}[{i}]"
        if not isinstance(c, dict):
            continue
        name = c.get("name")
        if not name:
            errs.append(required(cpath + ".name"))
        elif isinstance(name, str):
            errs.extend(invalid(cpath + ".name", name, m) for m in dns1123_label(name))
            if name in names:
                errs.append(FieldError(DUPLICATE, cpath + ".name", name))
            names.add(name)
        if not c.get("image"):
            errs.append(required(cpath + ".image"))
        pull = c.get("imagePullPolicy")
        if pull and pull not in _PULL:
            errs.append(not_supported(cpath + ".imagePullPolicy", pull, _PULL))
        for j, port in enumerate(c.get("ports") or ()):
            if not isinstance(port, dict):
                continue
            ppath = f"{cpath}.ports[{j}]"
            errs.extend(_port_range(ppath + ".containerPort", port.get("containerPort")))
            if port.get("hostPort"):
                errs.extend(_port_range(ppath + ".hostPort", port.get("hostPort")))
            proto = port.get("protocol")
            if proto and proto not in _PROTOCOLS:
                errs.append(not_supported(ppath + ".protocol", proto, _PROTOCOLS))
        errs.extend(_resources(c.get("resources"), cpath + ".resources"))
        for j, mount in enumerate(c.get("volumeMounts") or ()):
            mname = mount.get("name") if isinstance(mount, dict) else None
            if mname and mname not in volumes:
                errs.append(FieldError(NOT_FOUND, f"{cpath}.volumeMounts[{j}].name", mname))
    return errs


def validate_pod_spec(spec: Any, path: str, *, restart: list[str] = _RESTART) -> list[FieldError]:
    """A PodSpec (of a Pod or of a workload's template) at ``path``."""
    if not isinstance(spec, dict):
        return [required(path)]
    errs: list[FieldError] = []
    if not spec.get("containers"):
        errs.append(required(path + ".containers"))
    declared = {v.get("name") for v in spec.get("volumes") or () if isinstance(v, dict)}
    names: set[str] = set()
    errs.extend(_containers(spec, path, "containers", names, declared))
    errs.extend(_containers(spec, path, "initContainers", names, declared))
    policy = spec.get("restartPolicy")
    if policy and policy not in restart:
        errs.append(not_supported(path + ".restartPolicy", policy, restart))
    dns = spec.get("dnsPolicy")
    if dns and dns not in _DNS_POLICY:
        errs.append(not_supported(path + ".dnsPolicy", dns, _DNS_POLICY))
    for i, tol in enumerate(spec.get("tolerations") or ()):
        if not isinstance(tol, dict):
            continue
        operator = tol.get("operator")
        if operator and operator not in _TOLERATION_OPS:
            errs.append(not_supported(f"{path}.tolerations[{i}].operator", operator,
                                      _TOLERATION_OPS))
        if operator == "Exists" and tol.get("value"):
            errs.append(invalid(f"{path}.tolerations[{i}].operator", operator,
                                "value must be empty when `operator` is 'Exists'"))
        effect = tol.get("effect")
        if effect and effect not in _TAINT_EFFECTS:
            errs.append(not_supported(f"{path}.tolerations[{i}].effect", effect, _TAINT_EFFECTS))
    volumes: set[str] = set()
    for i, vol in enumerate(spec.get("volumes") or ()):
        vname = vol.get("name") if isinstance(vol, dict) else None
        vpath = f"{path}.volumes[{i}].name"
        if not vname:
            errs.append(required(vpath))
        elif isinstance(vname, str):
            errs.extend(invalid(vpath, vname, m) for m in dns1123_label(vname))
            if vname in volumes:
                errs.append(FieldError(DUPLICATE, vpath, vname))
            volumes.add(vname)
    return errs


def _go_labels(labels: Any) -> str:
    items = ", ".join(f'"{k}":"{v}"' for k, v in sorted((labels or {}).items()))
    return "map[string]string{" + items + "}"


def selector_matches(selector: JSON, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels, matchExpressions) selects labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def validate_label_selector(selector: JSON, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        errs.extend(invalid(f"{path}.matchLabels", key, m) for m in qualified_name(key))
        if isinstance(value, str):
            errs.extend(invalid(f"{path}.matchLabels", value, m) for m in label_value(value))
    for i, expr in enumerate(selector.get("matchExpressions") or ()):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        if op not in _SELECTOR_OPS:
            errs.append(not_supported(epath + ".operator", op, _SELECTOR_OPS))
        elif op in ("In", "NotIn") and not expr.get("values"):
            errs.append(required(epath + ".values",
                                 "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and expr.get("values"):
            errs.append(FieldError(FORBIDDEN, epath + ".values", None,
                                   "may not be specified when `operator` is 'Exists' or "
                                   "'DoesNotExist'"))
    return errs


def _workload(obj: JSON, *, resource: str, replicas: bool) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    count = spec.get("replicas")
    if replicas and isinstance(count, int) and count < 0:
        errs.append(invalid("spec.replicas", count, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector, dict):
        errs.append(required("spec.selector"))
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        errs.append(invalid("spec.selector", selector,
                            f"empty selector is invalid for {resource}"))
    else:
        errs.extend(validate_label_selector(selector, "spec.selector"))
        labels = ((template or {}).get("metadata") or {}).get("labels") or {}
        if isinstance(template, dict) and not selector_matches(selector, labels):
            errs.append(FieldError("FieldValueInvalid", "spec.template.metadata.labels",
                                   GoRepr(_go_labels(labels)),
                                   "`selector` does not match template `labels`"))
    if not isinstance(template, dict):
        errs.append(required("spec.template"))
    else:
        errs.extend(validate_pod_spec(template.get("spec"), "spec.template.spec",
                                      restart=["Always"]))
    if resource == "deployment":
        errs.extend(_strategy(spec.get("strategy")))
    return errs


def _strategy(strategy: Any) -> list[FieldError]:
    if not isinstance(strategy, dict):
        return []
    typ = strategy.get("type")
    if typ and typ not in _STRATEGIES:
        return [not_supported("spec.strategy.type", typ, _STRATEGIES)]
    rolling = strategy.get("rollingUpdate")
    if typ == "Recreate" and rolling is not None:
        return [FieldError(FORBIDDEN, "spec.strategy.rollingUpdate", None,
                           "may not be specified when strategy `type` is 'Recreate'")]
    if isinstance(rolling, dict) and rolling.get("maxSurge") in (0, "0%") and \
            rolling.get("maxUnavailable") in (0, "0%"):
        return [invalid("spec.strategy.rollingUpdate.maxUnavailable", rolling["maxUnavailable"],
                        "may not be 0 when `maxSurge` is 0")]
    return []


def _service(obj: JSON) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    typ = spec.get("type") or "ClusterIP"
    if typ not in _SERVICE_TYPES:
        errs.append(not_supported("spec.type", typ, _SERVICE_TYPES))
    affinity = spec.get("sessionAffinity")
    if affinity and affinity not in _AFFINITY:
        errs.append(not_supported("spec.sessionAffinity", affinity, _AFFINITY))
    ports = spec.get("ports") or []
    if not ports and typ != "ExternalName" and spec.get("clusterIP") != "None":
        errs.append(required("spec.ports"))
    if typ == "ExternalName" and not spec.get("externalName"):
        errs.append(required("spec.externalName"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        ppath = f"spec.ports[{i}]"
        pname = port.get("name")
        if len(ports) > 1 and not pname:
            errs.append(required(ppath + ".name"))
        elif pname:
            if pname in names:
                errs.append(FieldError(DUPLICATE, ppath + ".name", pname))
            names.add(pname)
        errs.extend(_port_range(ppath + ".port", port.get("port")))
        if isinstance(port.get("targetPort"), int) and port["targetPort"] != 0:
            errs.extend(_port_range(ppath + ".targetPort", port["targetPort"]))
        proto = port.get("protocol")
        if proto and proto not in _PROTOCOLS:
            errs.append(not_supported(ppath + ".protocol", proto, _PROTOCOLS))
    return errs


def _config_keys(obj: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for field in ("data", "binaryData", "stringData"):
        values = obj.get(field)
        if not isinstance(values, dict):
            continue
        for key in values:
            path = f"{field}[{key}]"
            if len(key) > 253:
                errs.append(invalid(path, key, "must be no more than 253 characters"))
            if not _CONFIG_KEY.match(key):
                errs.append(invalid(path, key, _CONFIG_KEY_MSG))
            if field != "stringData":
                if key in seen:
                    errs.append(invalid(path, key, "duplicate of key present in data"))
                seen.add(key)
    return errs


def _pvc(obj: JSON) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    if not spec.get("accessModes"):
        errs.append(required("spec.accessModes", "at least 1 access mode is required"))
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        errs.append(required("spec.resources[storage]"))
    return errs


def _node(obj: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = obj.get("spec")
    for i, taint in enumerate((spec or {}).get("taints") or () if isinstance(spec, dict) else ()):
        effect = taint.get("effect") if isinstance(taint, dict) else None
        if effect and effect not in _TAINT_EFFECTS:
            errs.append(not_supported(f"spec.taints[{i}].effect", effect, _TAINT_EFFECTS))
    return errs


_BUILTIN_RULES: dict[tuple[str, str], Callable[[JSON], list[FieldError]]] = {
    ("", "Pod"): lambda o: validate_pod_spec(o.get("spec"), "spec"),
    ("", "Service"): _service,
    ("", "ConfigMap"): _config_keys,
    ("", "Secret"): _config_keys,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Node"): _node,
    ("apps", "Deployment"): lambda o: _workload(o, resource="deployment", replicas=True),
    ("apps", "ReplicaSet"): lambda o: _workload(o, resource="replicaset", replicas=True),
    ("apps", "StatefulSet"): lambda o: _workload(o, resource="statefulset", replicas=True),
    ("apps", "DaemonSet"): lambda o: _workload(o, resource="daemonset", replicas=False),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): lambda o: _crd(o),
}


def _crd(obj: JSON) -> list[FieldError]:
    from kubevisor.api import crd

    return crd.validate_crd(obj)


def validate_builtin(rt: ResourceType, obj: JSON) -> list[FieldError]:
    """The kind's own rules (none for most kinds)."""
    rule = _BUILTIN_RULES.get((rt.group, rt.kind))
    if rule is None:
        return []
    return rule(obj)
