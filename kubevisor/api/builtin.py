"""The built-in kinds kubevisor serves, declared as data.

Each entry mirrors what kube-apiserver v1.32 shows in discovery for that
resource (plural, short names, categories, verbs, status and scale
subresources, field-selectable fields) and names the upstream component
schema that ``api.schemas`` resolves. Printer columns come from
``api.printers`` and server-side defaults from ``api.defaults``. Called by
the apiserver at start (``builtin_registry()``) and by tests.
"""

from __future__ import annotations

from kubevisor.api.kinds import Registry, ResourceType, ScaleSubresource

# kube-apiserver's verb sets.
_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_NO_COLLECTION = ("create", "delete", "get", "list", "patch", "update", "watch")

# For built-ins the scale label selector is spec.selector, a LabelSelector
# object (not a string as in CRDs); the apiserver renders it as a string.
_BUILTIN_SCALE = ScaleSubresource(
    spec_replicas_path=".spec.replicas",
    status_replicas_path=".status.replicas",
    label_selector_path=".spec.selector",
)

_CORE = "io.k8s.api.core.v1."
_APPS = "io.k8s.api.apps.v1."


def _rt(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    schema_name: str,
    namespaced: bool = True,
    short_names: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    verbs: tuple[str, ...] = _ALL_VERBS,
    has_status: bool = True,
    scale: ScaleSubresource | None = None,
    selectable_fields: tuple[str, ...] = (),
) -> ResourceType:
    from kubevisor.api import defaults, printers

    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short_names,
        categories=categories,
        verbs=verbs,
        has_status=has_status,
        scale=scale,
        printer_columns=printers.columns_for(group, kind),
        schema_name=schema_name,
        selectable_fields=selectable_fields,
        defaulter=defaults.defaulter_for(group, kind),
    )


def builtin_types() -> list[ResourceType]:
    """Every built-in resource type, in kube-apiserver's discovery order."""
    core, apps = "", "apps"
    return [
        # core/v1
        _rt(core, "v1", "ConfigMap", "configmaps", schema_name=_CORE + "ConfigMap",
            short_names=("cm",), has_status=False),
        _rt(core, "v1", "Endpoints", "endpoints", schema_name=_CORE + "Endpoints",
            short_names=("ep",), has_status=False),
        _rt(core, "v1", "Event", "events", schema_name=_CORE + "Event",
            short_names=("ev",), has_status=False,
            selectable_fields=(
                "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                "involvedObject.uid", "involvedObject.apiVersion",
                "involvedObject.resourceVersion", "involvedObject.fieldPath",
                "reason", "reportingComponent", "source", "type",
            )),
        _rt(core, "v1", "LimitRange", "limitranges", schema_name=_CORE + "LimitRange",
            short_names=("limits",), has_status=False),
        _rt(core, "v1", "Namespace", "namespaces", schema_name=_CORE + "Namespace",
            namespaced=False, short_names=("ns",), verbs=_NO_COLLECTION,
            selectable_fields=("status.phase",)),
        _rt(core, "v1", "Node", "nodes", schema_name=_CORE + "Node",
            namespaced=False, short_names=("no",),
            selectable_fields=("spec.unschedulable",)),
        _rt(core, "v1", "PersistentVolumeClaim", "persistentvolumeclaims",
            schema_name=_CORE + "PersistentVolumeClaim", short_names=("pvc",)),
        _rt(core, "v1", "PersistentVolume", "persistentvolumes",
            schema_name=_CORE + "PersistentVolume", namespaced=False, short_names=("pv",)),
        _rt(core, "v1", "Pod", "pods", schema_name=_CORE + "Pod",
            short_names=("po",), categories=("all",),
            selectable_fields=(
                "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                "status.podIP", "status.podIPs", "status.nominatedNodeName",
            )),
        _rt(core, "v1", "ResourceQuota", "resourcequotas", schema_name=_CORE + "ResourceQuota",
            short_names=("quota",)),
        _rt(core, "v1", "Secret", "secrets", schema_name=_CORE + "Secret",
            has_status=False, selectable_fields=("type",)),
        _rt(core, "v1", "ServiceAccount", "serviceaccounts",
            schema_name=_CORE + "ServiceAccount", short_names=("sa",), has_status=False),
        _rt(core, "v1", "Service", "services", schema_name=_CORE + "Service",
            short_names=("svc",), categories=("all",),
            selectable_fields=("spec.clusterIP", "spec.type")),
        # apps/v1
        _rt(apps, "v1", "DaemonSet", "daemonsets", schema_name=_APPS + "DaemonSet",
            short_names=("ds",), categories=("all",)),
        _rt(apps, "v1", "Deployment", "deployments", schema_name=_APPS + "Deployment",
            short_names=("deploy",), categories=("all",), scale=_BUILTIN_SCALE),
        _rt(apps, "v1", "ReplicaSet", "replicasets", schema_name=_APPS + "ReplicaSet",
            short_names=("rs",), categories=("all",), scale=_BUILTIN_SCALE,
            selectable_fields=("status.replicas",)),
        _rt(apps, "v1", "StatefulSet", "statefulsets", schema_name=_APPS + "StatefulSet",
            short_names=("sts",), categories=("all",), scale=_BUILTIN_SCALE),
        _rt(apps, "v1", "ControllerRevision", "controllerrevisions",
            schema_name=_APPS + "ControllerRevision", has_status=False),
        # batch/v1
        _rt("batch", "v1", "Job", "jobs", schema_name="io.k8s.api.batch.v1.Job",
            categories=("all",)),
        # certificates.k8s.io/v1 (the approval subresource: apiserver.csr)
        _rt("certificates.k8s.io", "v1", "CertificateSigningRequest",
            "certificatesigningrequests",
            schema_name="io.k8s.api.certificates.v1.CertificateSigningRequest",
            namespaced=False, short_names=("csr",),
            selectable_fields=("spec.signerName",)),
        # coordination.k8s.io/v1
        _rt("coordination.k8s.io", "v1", "Lease", "leases",
            schema_name="io.k8s.api.coordination.v1.Lease", has_status=False),
        # apiextensions.k8s.io/v1
        _rt("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
            "customresourcedefinitions",
            schema_name="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."
            "CustomResourceDefinition",
            namespaced=False, short_names=("crd", "crds"), categories=("api-extensions",)),
        # rbac.authorization.k8s.io/v1
        *[
            _rt("rbac.authorization.k8s.io", "v1", kind, plural,
                schema_name="io.k8s.api.rbac.v1." + kind, namespaced=namespaced,
                has_status=False)
            for kind, plural, namespaced in (
                ("ClusterRoleBinding", "clusterrolebindings", False),
                ("ClusterRole", "clusterroles", False),
                ("RoleBinding", "rolebindings", True),
                ("Role", "roles", True),
            )
        ],
        # node.k8s.io/v1
        _rt("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses",
            schema_name="io.k8s.api.node.v1.RuntimeClass", namespaced=False, has_status=False),
        # discovery.k8s.io/v1
        _rt("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices",
            schema_name="io.k8s.api.discovery.v1.EndpointSlice", has_status=False),
        # storage.k8s.io/v1
        _rt("storage.k8s.io", "v1", "StorageClass", "storageclasses",
            schema_name="io.k8s.api.storage.v1.StorageClass", namespaced=False,
            short_names=("sc",), has_status=False),
        # vmoperator.vmware.com (v1alpha6 stored, older versions converted)
        *_vmoperator_types(),
    ]


def _vmoperator_types() -> list[ResourceType]:
    from kubevisor.api.vmoperator import kinds

    return kinds.resource_types()


def builtin_registry() -> Registry:
    """A fresh registry holding every built-in kind (CRDs are added later)."""
    return Registry(builtin_types())


def warm_up(registry: Registry) -> None:
    """Load and convert the upstream schemas, compile every kind's validator
    and build the OpenAPI documents now, so the first requests after start
    do not pay for it (about 0.3 s). Called by the apiserver at start-up."""
    from kubevisor.api import openapi, openapiv2, schemas, validation

    for rt in registry:
        validation.validate(rt, {"metadata": {"name": "warm-up"}})
        validation.unknown_fields_of(rt, {})
        schemas.schema_of(rt)
    openapi.openapi_v3_index(registry)
    openapiv2.openapi_v2_protobuf(registry)
