"""Per-kind object rules that kube-apiserver keeps in each kind's "strategy".

What happens to status on create, whether PUT may create, whether delete
is graceful, whether delete answers with the object or a Status, and the
few kind-specific touches (a new Namespace gets the ``kubernetes``
finalizer and phase Active; a Pod starts Pending; a CRD is accepted and
established at once). Pure functions over JSON-shaped dicts; called by the
resource handlers.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api import crd as api_crd
from kubevisor.api.kinds import ResourceType
from kubevisor.api.meta import now_rfc3339

JSON = dict[str, Any]

# (group, kind) whose PUT creates a missing object (AllowCreateOnUpdate).
_CREATE_ON_UPDATE = frozenset({
    ("", "Endpoints"), ("", "Event"), ("coordination.k8s.io", "Lease"),
    ("rbac.authorization.k8s.io", "Role"), ("rbac.authorization.k8s.io", "RoleBinding"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
})

# Kinds whose status a create keeps (the kubelet registers a Node with status).
_KEEP_STATUS_ON_CREATE = frozenset({("", "Node"), ("", "Event")})

# Kinds whose delete answers with the object rather than a Status.
_RETURN_DELETED = frozenset({
    ("", "Pod"), ("", "Service"), ("", "Namespace"), ("", "Node"),
    ("", "PersistentVolume"), ("", "PersistentVolumeClaim"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
})

# Kinds whose metadata.generation the server keeps (custom resources too).
_GENERATION = frozenset({
    ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"),
    ("apps", "DaemonSet"), ("batch", "Job"), ("batch", "CronJob"),
    ("policy", "PodDisruptionBudget"), ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"), ("autoscaling", "HorizontalPodAutoscaler"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"), ("", "ReplicationController"),
})

CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")
NAMESPACE = ("", "Namespace")
# Namespaces kube-apiserver's NamespaceLifecycle admission never lets go of.
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})


def gk(rt: ResourceType) -> tuple[str, str]:
    return (rt.group, rt.kind)


def tracks_generation(rt: ResourceType) -> bool:
    return rt.custom or gk(rt) in _GENERATION


def allow_create_on_update(rt: ResourceType) -> bool:
    return gk(rt) in _CREATE_ON_UPDATE


def returns_deleted_object(rt: ResourceType) -> bool:
    return gk(rt) in _RETURN_DELETED


def prepare_for_create(rt: ResourceType, obj: JSON) -> None:
    """Reset what a create may not set, fill what the server owns."""
    key = gk(rt)
    if rt.has_status and key not in _KEEP_STATUS_ON_CREATE:
        obj.pop("status", None)
    if key == NAMESPACE:
        spec = obj.setdefault("spec", {})
        finalizers = spec.get("finalizers") or []
        if "kubernetes" not in finalizers:
            spec["finalizers"] = [*finalizers, "kubernetes"]
        obj["status"] = {"phase": "Active"}
    elif key == ("", "Pod"):
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
    elif key in (("", "PersistentVolume"), ("", "PersistentVolumeClaim")):
        obj["status"] = {"phase": "Pending"}
    elif key == CRD:
        obj["status"] = api_crd.accepted_status(obj, now_rfc3339())
    elif key == ("batch", "Job"):
        _job_selector(obj)


def _job_selector(job: JSON) -> None:
    """Unless ``spec.manualSelector``, select the Job's pods by its uid and
    label its template so (kube's job strategy, generateSelector)."""
    spec = job.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    uid, name = job["metadata"]["uid"], job["metadata"].get("name", "")
    template = spec.get("template")
    if isinstance(template, dict):
        meta = template.get("metadata")
        if not isinstance(meta, dict):
            meta = template["metadata"] = {}
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = meta["labels"] = {}
        labels.update({"batch.kubernetes.io/controller-uid": uid,
                       "batch.kubernetes.io/job-name": name,
                       "controller-uid": uid, "job-name": name})
    if spec.get("selector") is None:
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def prepare_for_update(rt: ResourceType, new: JSON, old: JSON) -> None:
    key = gk(rt)
    if key == CRD:
        new["status"] = api_crd.accepted_status({**new, "status": old.get("status")}, now_rfc3339())
    elif key == NAMESPACE:
        # spec.finalizers changes only through namespaces/<n>/finalize.
        new["spec"] = {**(new.get("spec") or {}),
                       "finalizers": (old.get("spec") or {}).get("finalizers", [])}
        if not new["spec"]["finalizers"]:
            del new["spec"]["finalizers"]


def graceful_delete_seconds(rt: ResourceType, obj: JSON, requested: int | None) -> int:
    """Seconds of graceful deletion (0: delete at once). Only Pods bound to a
    node and not finished are deleted gracefully, as kube-apiserver does."""
    if gk(rt) != ("", "Pod"):
        return 0
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    if not spec.get("nodeName") or phase in ("Failed", "Succeeded"):
        return 0
    if requested is not None:
        return max(requested, 0)
    return int(spec.get("terminationGracePeriodSeconds", 30))


def _qos_class(pod: JSON) -> str:
    containers = [*((pod.get("spec") or {}).get("containers") or []),
                  *((pod.get("spec") or {}).get("initContainers") or [])]
    requests_any = limits_all = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
        limits_all = limits_all or bool(lim)
    if not requests_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
