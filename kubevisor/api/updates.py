"""What an update may not change: kube-apiserver's immutability rules.

Each rule compares the stored object with the new one and returns
:class:`FieldError` values worded as kube-apiserver words them (a
Deployment's selector is immutable, a Pod's spec may only change images,
an ``immutable`` ConfigMap keeps its data, a binding keeps its roleRef, a
CRD keeps its group and scope…). Called through
``validation.validate_update`` by the apiserver's update and patch paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubevisor.api.fielderrors import FORBIDDEN, FieldError, GoRepr, invalid
from kubevisor.api.kinds import JSON, ResourceType

Rule = Callable[[JSON, JSON], list[FieldError]]


def _forbidden(path: str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, path, None, detail)


def _spec(obj: JSON) -> JSON:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _immutable(path: str, old: Any, new: Any, value: Any = None) -> list[FieldError]:
    if old == new:
        return []
    return [invalid(path, new if value is None else value, "field is immutable")]


def go_label_selector(selector: Any) -> GoRepr:
    """A LabelSelector as Go's %#v prints it in kube-apiserver's messages."""
    selector = selector if isinstance(selector, dict) else {}
    labels = selector.get("matchLabels")
    exprs = selector.get("matchExpressions")
    label_text = "map[string]string(nil)" if not labels else "map[string]string{" + ", ".join(
        f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"
    expr_text = "[]v1.LabelSelectorRequirement(nil)" if not exprs else \
        "[]v1.LabelSelectorRequirement{" + ", ".join(
            f'v1.LabelSelectorRequirement{{Key:"{e.get("key", "")}", '
            f'Operator:"{e.get("operator", "")}", Values:[]string{{'
            + ", ".join(f'"{v}"' for v in e.get("values") or ()) + "}}"
            for e in exprs) + "}"
    return GoRepr(f"v1.LabelSelector{{MatchLabels:{label_text}, MatchExpressions:{expr_text}}}")


# ---------------------------------------------------------------------------
# Pods

_POD_MUTABLE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _without_mutable(spec: JSON) -> JSON:
    out = dict(spec)
    for key in ("containers", "initContainers"):
        if isinstance(out.get(key), list):
            out[key] = [{k: v for k, v in c.items() if k != "image"} if isinstance(c, dict)
                        else c for c in out[key]]
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        out.pop(key, None)
    # Binding a pod (nodeName from unset to a node) is allowed here; kube-apiserver
    # requires the pods/binding subresource for it.
    out.pop("nodeName", None)
    return out


def _pod(old: JSON, new: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    old_spec, new_spec = _spec(old), _spec(new)
    if _without_mutable(old_spec) != _without_mutable(new_spec):
        errs.append(_forbidden("spec", _POD_MUTABLE_MESSAGE))
    old_node, new_node = old_spec.get("nodeName"), new_spec.get("nodeName")
    if old_node and new_node != old_node:
        errs.extend(_immutable("spec.nodeName", old_node, new_node))
    old_tol = old_spec.get("tolerations") or []
    new_tol = new_spec.get("tolerations") or []
    if any(t not in new_tol for t in old_tol):
        errs.append(_forbidden("spec.tolerations", "existing toleration can not be modified "
                               "except its tolerationSeconds"))
    old_ads, new_ads = old_spec.get("activeDeadlineSeconds"), new_spec.get(
        "activeDeadlineSeconds")
    if old_ads is not None and (new_ads is None or (isinstance(new_ads, int) and
                                                    new_ads > old_ads)):
        errs.append(invalid("spec.activeDeadlineSeconds", new_ads,
                            "must be less than or equal to previous value"))
    return errs


# ---------------------------------------------------------------------------
# Workloads


def _selector(old: JSON, new: JSON) -> list[FieldError]:
    old_sel, new_sel = _spec(old).get("selector"), _spec(new).get("selector")
    if old_sel is None or old_sel == new_sel:
        return []
    return [invalid("spec.selector", go_label_selector(new_sel), "field is immutable")]


_STS_MUTABLE = frozenset({"replicas", "ordinals", "template", "updateStrategy",
                          "persistentVolumeClaimRetentionPolicy", "minReadySeconds"})


def _stateful_set(old: JSON, new: JSON) -> list[FieldError]:
    errs = _selector(old, new)

    def strip(spec: JSON) -> JSON:
        return {k: v for k, v in spec.items() if k not in _STS_MUTABLE and k != "selector"}

    if strip(_spec(old)) != strip(_spec(new)):
        errs.append(_forbidden("spec", "updates to statefulset spec for fields other than "
                               "'replicas', 'ordinals', 'template', 'updateStrategy', "
                               "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
                               "are forbidden"))
    return errs


# ---------------------------------------------------------------------------
# Core objects


def _service(old: JSON, new: JSON) -> list[FieldError]:
    old_ip, new_ip = _spec(old).get("clusterIP"), _spec(new).get("clusterIP")
    if _spec(new).get("type") == "ExternalName" or not old_ip or not new_ip or old_ip == new_ip:
        return []
    return [invalid("spec.clusterIPs[0]", GoRepr(f'[]string{{"{new_ip}"}}'),
                    "may not change once set")]


def _immutable_data(old: JSON, new: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    if old.get("type") is not None and new.get("type") != old.get("type"):
        errs.extend(_immutable("type", old.get("type"), new.get("type")))
    if not old.get("immutable"):
        return errs
    if not new.get("immutable"):
        errs.append(_forbidden("immutable", "field is immutable when `immutable` is set"))
    for key in ("data", "binaryData"):
        if (old.get(key) or {}) != (new.get(key) or {}):
            errs.append(_forbidden(key, "field is immutable when `immutable` is set"))
    return errs


def _pvc(old: JSON, new: JSON) -> list[FieldError]:
    ignored = {"resources", "volumeAttributesClassName"}
    if not _spec(old).get("volumeName"):
        ignored.add("volumeName")  # binding a claim sets it
    if _spec(old).get("storageClassName") is None:
        ignored.add("storageClassName")  # the default class, set retroactively

    def strip(spec: JSON) -> JSON:
        return {k: v for k, v in spec.items() if k not in ignored}

    if strip(_spec(old)) != strip(_spec(new)):
        return [_forbidden("spec", "spec is immutable after creation except resources.requests "
                           "and volumeAttributesClassName for bound claims")]
    return []


def _node(old: JSON, new: JSON) -> list[FieldError]:
    old_cidr = _spec(old).get("podCIDR")
    if old_cidr and _spec(new).get("podCIDR") != old_cidr:
        return [_forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from '
                           '"" to valid')]
    return []


def _storage_class(old: JSON, new: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("parameters", "provisioner", "reclaimPolicy"):
        if old.get(key) != new.get(key):
            errs.append(_forbidden(key, f"updates to {key} are forbidden."))
    if old.get("volumeBindingMode") != new.get("volumeBindingMode"):
        errs.append(_forbidden("volumeBindingMode", "field is immutable"))
    return errs


def _role_ref(old: JSON, new: JSON) -> list[FieldError]:
    ref = old.get("roleRef")
    if ref == new.get("roleRef"):
        return []
    new_ref = new.get("roleRef") or {}
    value = GoRepr(f'rbac.RoleRef{{APIGroup:"{new_ref.get("apiGroup", "")}", '
                   f'Kind:"{new_ref.get("kind", "")}", Name:"{new_ref.get("name", "")}"}}')
    return [invalid("roleRef", value, "cannot change roleRef")]


def _runtime_class(old: JSON, new: JSON) -> list[FieldError]:
    return _immutable("handler", old.get("handler"), new.get("handler"))


def _crd(old: JSON, new: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("group", "scope"):
        errs.extend(_immutable(f"spec.{key}", _spec(old).get(key), _spec(new).get(key)))
    stored = ((old.get("status") or {}).get("storedVersions")) or []
    names = {v.get("name") for v in _spec(new).get("versions") or () if isinstance(v, dict)}
    for i, version in enumerate(stored):
        if version not in names:
            errs.append(invalid(f"status.storedVersions[{i}]", version,
                                "must appear in spec.versions"))
    return errs


_RULES: dict[tuple[str, str], Rule] = {
    ("", "Pod"): _pod,
    ("", "Service"): _service,
    ("", "ConfigMap"): _immutable_data,
    ("", "Secret"): _immutable_data,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Node"): _node,
    ("apps", "Deployment"): _selector,
    ("apps", "ReplicaSet"): _selector,
    ("apps", "DaemonSet"): _selector,
    ("apps", "StatefulSet"): _stateful_set,
    ("storage.k8s.io", "StorageClass"): _storage_class,
    ("rbac.authorization.k8s.io", "RoleBinding"): _role_ref,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _role_ref,
    ("node.k8s.io", "RuntimeClass"): _runtime_class,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
}


def immutability_errors(rt: ResourceType, old: JSON, new: JSON) -> list[FieldError]:
    """What ``new`` changes that an update of this kind may not change."""
    if rt.custom:
        return []
    rule = _RULES.get((rt.group, rt.kind))
    return rule(old, new) if rule is not None else []
