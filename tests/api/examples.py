"""Realistic objects of every built-in kind, as users and controllers write them.

Shared by the api tests (schema resolution and validation, defaults,
printers). Each call returns fresh dicts, so tests may mutate them.
"""

from __future__ import annotations

from typing import Any

TS = "2026-01-01T11:00:00Z"


def _meta(name: str, namespace: str | None = "default", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": "web"}, "creationTimestamp": TS,
                            **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _pod_spec() -> dict[str, Any]:
    return {
        "containers": [{
            "name": "nginx",
            "image": "nginx:1.27",
            "ports": [{"containerPort": 80, "name": "http"}],
            "env": [{"name": "MODE", "value": "prod"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": 1, "memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx/conf.d"}],
        }],
        "volumes": [{"name": "conf", "configMap": {"name": "nginx-conf"}}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
    }


def _template() -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": _pod_spec()}


def examples() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, kind) -> an object of that kind."""
    return {
        ("", "ConfigMap"): {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": _meta("nginx-conf"),
                            "data": {"default.conf": "server { listen 80; }"}},
        ("", "Endpoints"): {"apiVersion": "v1", "kind": "Endpoints", "metadata": _meta("web"),
                            "subsets": [{"addresses": [{"ip": "10.0.0.5"}],
                                         "ports": [{"port": 80, "name": "http"}]}]},
        ("", "Event"): {"apiVersion": "v1", "kind": "Event", "metadata": _meta("web.1"),
                        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default",
                                           "apiVersion": "v1"},
                        "reason": "Scheduled", "message": "Successfully assigned default/web",
                        "type": "Normal", "source": {"component": "scheduler"},
                        "firstTimestamp": TS, "lastTimestamp": TS, "count": 1},
        ("", "LimitRange"): {"apiVersion": "v1", "kind": "LimitRange", "metadata": _meta("lr"),
                             "spec": {"limits": [{"type": "Container",
                                                  "default": {"cpu": "500m"}}]}},
        ("", "Namespace"): {"apiVersion": "v1", "kind": "Namespace",
                            "metadata": _meta("team-a", None)},
        ("", "Node"): {"apiVersion": "v1", "kind": "Node", "metadata": _meta("host-1", None),
                       "spec": {"podCIDR": "10.244.0.0/24"},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                  "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                                  "nodeInfo": {"kubeletVersion": "v1.32.0", "machineID": "m",
                                               "systemUUID": "s", "bootID": "b",
                                               "kernelVersion": "6.1", "osImage": "Debian",
                                               "containerRuntimeVersion": "runc://1.1",
                                               "kubeProxyVersion": "", "operatingSystem": "linux",
                                               "architecture": "amd64"},
                                  "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}}},
        ("", "PersistentVolumeClaim"): {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta("data"),
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}},
        ("", "PersistentVolume"): {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": _meta("pv-1", None),
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/srv/pv-1"}}},
        ("", "Pod"): {"apiVersion": "v1", "kind": "Pod", "metadata": _meta("web"),
                      "spec": _pod_spec()},
        ("", "ResourceQuota"): {"apiVersion": "v1", "kind": "ResourceQuota",
                                "metadata": _meta("quota"),
                                "spec": {"hard": {"pods": "10", "requests.cpu": "4",
                                                  "limits.memory": "8Gi"}}},
        ("", "Secret"): {"apiVersion": "v1", "kind": "Secret", "metadata": _meta("creds"),
                         "data": {"password": "c2VjcmV0"}, "stringData": {"user": "admin"}},
        ("", "ServiceAccount"): {"apiVersion": "v1", "kind": "ServiceAccount",
                                 "metadata": _meta("builder")},
        ("", "Service"): {"apiVersion": "v1", "kind": "Service", "metadata": _meta("web"),
                          "spec": {"selector": {"app": "web"},
                                   "ports": [{"name": "http", "port": 80,
                                              "targetPort": "http"}]}},
        ("apps", "DaemonSet"): {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                "metadata": _meta("agent"),
                                "spec": {"selector": {"matchLabels": {"app": "web"}},
                                         "template": _template()}},
        ("apps", "Deployment"): {"apiVersion": "apps/v1", "kind": "Deployment",
                                 "metadata": _meta("web"),
                                 "spec": {"replicas": 3,
                                          "selector": {"matchLabels": {"app": "web"}},
                                          "template": _template()}},
        ("apps", "ReplicaSet"): {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "metadata": _meta("web-5d4f"),
                                 "spec": {"replicas": 3,
                                          "selector": {"matchLabels": {"app": "web"}},
                                          "template": _template()}},
        ("apps", "StatefulSet"): {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta("db"),
            "spec": {"serviceName": "db", "replicas": 1,
                     "selector": {"matchLabels": {"app": "web"}}, "template": _template(),
                     "volumeClaimTemplates": [{
                         "metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}]}},
        ("apps", "ControllerRevision"): {
            "apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": _meta("db-7b5d"),
            "data": {"spec": {"template": {**_template(), "$patch": "replace"}}},
            "revision": 1},
        ("batch", "Job"): {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta("pi"),
            "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 4,
                     "template": {**_template(), "spec": {
                         **_template()["spec"], "restartPolicy": "Never"}}}},
        ("coordination.k8s.io", "Lease"): {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": _meta("host-1", "kube-node-lease"),
            "spec": {"holderIdentity": "host-1", "leaseDurationSeconds": 40,
                     "renewTime": "2026-01-01T11:00:00.000000Z"}},
        ("apiextensions.k8s.io", "CustomResourceDefinition"): crd_example(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"): {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": _meta("admins", None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "name": "system:masters",
                          "apiGroup": "rbac.authorization.k8s.io"}]},
        ("rbac.authorization.k8s.io", "ClusterRole"): {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": _meta("system:reader", None),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        ("rbac.authorization.k8s.io", "RoleBinding"): {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _meta("read-pods"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "jane"},
                         {"kind": "ServiceAccount", "name": "builder", "namespace": "default"}]},
        ("rbac.authorization.k8s.io", "Role"): {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta("pod-reader"),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch"]}]},
        ("node.k8s.io", "RuntimeClass"): {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                          "metadata": _meta("crx", None), "handler": "crx"},
        ("discovery.k8s.io", "EndpointSlice"): {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": _meta("web-abcde", labels={"kubernetes.io/service-name": "web"}),
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": True},
                           "nodeName": "host-1"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        ("certificates.k8s.io", "CertificateSigningRequest"): {
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": _meta("node-csr-abc", None),
            "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
                     "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "usages": ["digital signature", "client auth"]}},
        ("storage.k8s.io", "StorageClass"): {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": _meta("local", None, annotations={
                "storageclass.kubernetes.io/is-default-class": "true"}),
            "provisioner": "kubevisor.io/local"},
    }


def crd_example() -> dict[str, Any]:
    """A CRD with a status and scale subresource, printer columns and defaults."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com", "creationTimestamp": TS},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                      "shortNames": ["ct"], "categories": ["all"]},
            "versions": [
                {
                    "name": "v1", "served": True, "storage": True,
                    "subresources": {"status": {}, "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector"}},
                    "selectableFields": [{"jsonPath": ".spec.cronSpec"}],
                    "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Ready", "type": "string",
                         "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                        {"name": "Image", "type": "string", "jsonPath": ".spec.image",
                         "priority": 1},
                        {"name": "Age", "type": "date",
                         "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["cronSpec"],
                                "properties": {
                                    "cronSpec": {"type": "string",
                                                 "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                                    "image": {"type": "string", "maxLength": 64},
                                    "replicas": {"type": "integer", "minimum": 0,
                                                 "maximum": 10, "default": 1},
                                    "policy": {"type": "string", "enum": ["Allow", "Forbid"],
                                               "default": "Allow"},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "note": {"type": "string", "nullable": True},
                                    "tags": {"type": "array", "items": {"type": "string"},
                                             "maxItems": 3, "x-kubernetes-list-type": "set"},
                                    "ports": {"type": "array",
                                              "x-kubernetes-list-type": "map",
                                              "x-kubernetes-list-map-keys": ["name"],
                                              "items": {"type": "object", "required": ["name"],
                                                        "properties": {
                                                            "name": {"type": "string"},
                                                            "port": {"type": "integer"}}}},
                                    "extra": {"type": "object",
                                              "x-kubernetes-preserve-unknown-fields": True},
                                    "template": {"type": "object",
                                                 "x-kubernetes-embedded-resource": True,
                                                 "x-kubernetes-preserve-unknown-fields": True},
                                    "env": {"type": "object",
                                            "additionalProperties": {"type": "string"}},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "replicas": {"type": "integer"},
                                    "selector": {"type": "string"},
                                    "conditions": {"type": "array", "items": {
                                        "type": "object",
                                        "properties": {"type": {"type": "string"},
                                                       "status": {"type": "string"}}}},
                                },
                            },
                        },
                    }},
                },
                {
                    "name": "v1beta1", "served": True, "storage": False,
                    "schema": {"openAPIV3Schema": {"type": "object",
                                                   "x-kubernetes-preserve-unknown-fields": True}},
                },
            ],
        },
    }
