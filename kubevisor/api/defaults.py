"""Server-side defaults, as kube-apiserver fills them in.

For built-in kinds these are the defaults users see in ``kubectl get -o
yaml`` (the Go ``SetDefaults_*`` functions plus what the ServiceAccount
and Priority admission plugins add to pods); for custom resources they are
the ``default`` values of the CRD's structural schema. A defaulter mutates
the object in place and is idempotent. ``builtin.py`` and ``crd.py`` wire
them in as ``ResourceType.defaulter``; the apiserver calls it on create and
update before validation.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from kubevisor.api.kinds import JSON

Defaulter = Callable[[JSON], None]


def _obj(parent: JSON, key: str) -> JSON:
    """``parent[key]``, created if absent or null. A value of the wrong type is
    left for validation to report; defaults then go to a detached dict."""
    value = parent.get(key)
    if isinstance(value, dict):
        return value
    if value is None:
        value = parent[key] = {}
        return value
    return {}


def _list(parent: JSON, key: str) -> list[Any]:
    value = parent.get(key)
    return value if isinstance(value, list) else []


def image_pull_policy(image: str) -> str:
    """Always for ``:latest`` or an untagged image, else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("scheme", "HTTP")


def _container(c: Any, *, host_network: bool) -> None:
    if not isinstance(c, dict):
        return
    image = c.get("image")
    if isinstance(image, str) and image:
        c.setdefault("imagePullPolicy", image_pull_policy(image))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in _list(c, "ports"):
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if host_network and "containerPort" in port:
                port.setdefault("hostPort", port["containerPort"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(probe))
    for env in _list(c, "env"):
        ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")


def _volume(v: Any) -> None:
    if not isinstance(v, dict):
        return
    for key in ("configMap", "secret"):
        source = v.get(key)
        if isinstance(source, dict):
            source.setdefault("defaultMode", 420)
    projected = v.get("projected")
    if isinstance(projected, dict):
        projected.setdefault("defaultMode", 420)
    if not any(k != "name" for k in v):
        v["emptyDir"] = {}


def pod_spec(spec: JSON, *, admission: bool = False) -> None:
    """PodSpec defaults (also used for workload templates); ``admission``
    adds what the ServiceAccount, Priority and DefaultTolerationSeconds
    admission plugins set on pods (not on templates)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    if admission:
        _pod_admission(spec)
    host_network = bool(spec.get("hostNetwork"))
    for key in ("containers", "initContainers"):
        for c in _list(spec, key):
            _container(c, host_network=host_network)
    for v in _list(spec, "volumes"):
        _volume(v)


def _pod_admission(spec: JSON) -> None:
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = spec["tolerations"] = []
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(isinstance(t, dict) and t.get("key") == key and t.get("effect") in
                   ("NoExecute", None, "") for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": 300})


def _template_spec(spec: JSON) -> None:
    template = _obj(spec, "template")
    _obj(template, "metadata")
    pod_spec(_obj(template, "spec"))


def qos_class(spec: JSON) -> str:
    """The pod's QoS class from its containers' requests and limits."""
    containers = [c for c in _list(spec, "containers") + _list(spec, "initContainers")
                  if isinstance(c, dict)]
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            limit = limits.get(name)
            if limit is None or requests.get(name, limit) != limit:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    pod_spec(spec, admission=True)
    status = _obj(obj, "status")
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", qos_class(spec))


def deployment(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    spec.setdefault("replicas", 1)
    strategy = _obj(spec, "strategy")
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _obj(strategy, "rollingUpdate")
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template_spec(spec)


def replica_set(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    spec.setdefault("replicas", 1)
    _template_spec(spec)


def persistent_volume_claim(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    spec.setdefault("volumeMode", "Filesystem")
    _obj(obj, "status").setdefault("phase", "Pending")


def stateful_set(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    update = _obj(spec, "updateStrategy")
    update.setdefault("type", "RollingUpdate")
    if update["type"] == "RollingUpdate":
        _obj(update, "rollingUpdate").setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    retention = _obj(spec, "persistentVolumeClaimRetentionPolicy")
    retention.setdefault("whenDeleted", "Retain")
    retention.setdefault("whenScaled", "Retain")
    for claim in _list(spec, "volumeClaimTemplates"):
        if isinstance(claim, dict):
            claim.setdefault("apiVersion", "v1")
            claim.setdefault("kind", "PersistentVolumeClaim")
            persistent_volume_claim(claim)
    _template_spec(spec)


def daemon_set(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    update = _obj(spec, "updateStrategy")
    update.setdefault("type", "RollingUpdate")
    if update["type"] == "RollingUpdate":
        rolling = _obj(update, "rollingUpdate")
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template_spec(spec)


def job(obj: JSON) -> None:
    """batch/v1 Job (SetDefaults_Job); the selector comes from the apiserver's
    create strategy."""
    spec = _obj(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    if spec.get("backoffLimitPerIndex") is None:
        spec.setdefault("backoffLimit", 6)
    else:
        spec.setdefault("backoffLimit", 2**31 - 1)
    spec.setdefault("suspend", False)
    if spec.get("podFailurePolicy") is None:
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _template_spec(spec)


def service(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    for port in _list(spec, "ports"):
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "targetPort" not in port and "port" in port:
                port["targetPort"] = port["port"]
    _obj(obj, "status").setdefault("loadBalancer", {})


def secret(obj: JSON) -> None:
    obj.setdefault("type", "Opaque")
    # stringData is write-only: kube-apiserver folds it into data (base64,
    # overriding data's keys) when it decodes the object, so it is never stored.
    string_data = obj.get("stringData")
    if isinstance(string_data, dict) and all(isinstance(v, str) for v in string_data.values()):
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()
        del obj["stringData"]


def namespace(obj: JSON) -> None:
    meta = _obj(obj, "metadata")
    if isinstance(meta.get("name"), str):
        _obj(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    _obj(obj, "spec").setdefault("finalizers", ["kubernetes"])
    _obj(obj, "status").setdefault("phase", "Active")


def persistent_volume(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    _obj(obj, "status").setdefault("phase", "Pending")


def endpoints(obj: JSON) -> None:
    for subset in _list(obj, "subsets"):
        for port in _list(subset, "ports") if isinstance(subset, dict) else ():
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def storage_class(obj: JSON) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def _binding(obj: JSON) -> None:
    for subject in _list(obj, "subjects"):
        if isinstance(subject, dict) and "apiGroup" not in subject:
            kind = subject.get("kind")
            subject["apiGroup"] = "" if kind == "ServiceAccount" else "rbac.authorization.k8s.io"


def custom_resource_definition(obj: JSON) -> None:
    spec = _obj(obj, "spec")
    names = _obj(spec, "names")
    if isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    _obj(spec, "conversion").setdefault("strategy", "None")


_BUILTIN: dict[tuple[str, str], Defaulter] = {
    ("", "Pod"): pod,
    ("", "Service"): service,
    ("", "Secret"): secret,
    ("", "Namespace"): namespace,
    ("", "PersistentVolume"): persistent_volume,
    ("", "PersistentVolumeClaim"): persistent_volume_claim,
    ("", "Endpoints"): endpoints,
    ("apps", "Deployment"): deployment,
    ("apps", "ReplicaSet"): replica_set,
    ("apps", "StatefulSet"): stateful_set,
    ("apps", "DaemonSet"): daemon_set,
    ("batch", "Job"): job,
    ("storage.k8s.io", "StorageClass"): storage_class,
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): custom_resource_definition,
}


def defaulter_for(group: str, kind: str) -> Defaulter | None:
    """The defaulting function of a built-in kind, or None."""
    return _BUILTIN.get((group, kind))


# ---------------------------------------------------------------------------
# Custom resources: the structural schema's ``default`` values


def _has_defaults(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if "default" in schema:
        return True
    children = list((schema.get("properties") or {}).values())
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            children.append(schema[key])
    return any(_has_defaults(c) for c in children)


def _apply(schema: JSON, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value and _has_defaults(sub):
                _apply(sub, value[name])
        add = schema.get("additionalProperties")
        if isinstance(add, dict) and _has_defaults(add):
            for item in value.values():
                _apply(add, item)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict) and _has_defaults(items):
            for item in value:
                _apply(items, item)


def schema_defaulter(schema: JSON | None) -> Defaulter | None:
    """A defaulter applying a structural schema's ``default`` values to
    absent fields (as kube-apiserver does for custom resources); None if the
    schema has no defaults. ``metadata`` is never defaulted."""
    if not _has_defaults(schema):
        return None
    assert schema is not None
    root = {**schema, "properties": {k: v for k, v in (schema.get("properties") or {}).items()
                                     if k != "metadata"}}

    def apply(obj: JSON) -> None:
        _apply(root, obj)

    return apply
