"""Schema and built-in validation: kube-apiserver's reasons and messages,
strict unknown fields, CRD structural-schema keywords, and speed."""

from __future__ import annotations

from typing import Any

import pytest

from kubevisor.api import validation
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.crd import resource_types
from kubevisor.api.kinds import ResourceType
from kubevisor.api.validation import FieldError, invalid_message, unknown_fields_of, validate
from tests.api.examples import crd_example, examples

REGISTRY = builtin_registry()


def _rt(group: str, kind: str) -> ResourceType:
    rt = REGISTRY.by_kind(group, "v1", kind)
    assert rt is not None
    return rt


def _messages(errs: list[FieldError]) -> list[str]:
    return [str(e) for e in errs]


def test_type_error_reads_like_kube_apiserver() -> None:
    deploy = examples()[("apps", "Deployment")]
    deploy["spec"]["replicas"] = "three"
    errs = validate(_rt("apps", "Deployment"), deploy)
    assert _messages(errs) == ['spec.replicas: Invalid value: "string": spec.replicas in body '
                               'must be of type integer: "string"']
    assert errs[0].type == "FieldValueTypeInvalid"
    assert errs[0].body().startswith('Invalid value: "string"')


def test_pod_rules() -> None:
    pod = examples()[("", "Pod")]
    del pod["spec"]["containers"][0]["image"]
    pod["spec"]["containers"].append({"name": "nginx", "image": "busybox",
                                      "ports": [{"containerPort": 70000, "protocol": "ICMP"}]})
    pod["spec"]["restartPolicy"] = "Sometimes"
    errs = validate(_rt("", "Pod"), pod)
    assert _messages(errs) == [
        "spec.containers[0].image: Required value",
        'spec.containers[1].name: Duplicate value: "nginx"',
        "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 "
        "and 65535, inclusive",
        'spec.containers[1].ports[0].protocol: Unsupported value: "ICMP": supported values: '
        '"SCTP", "TCP", "UDP"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"OnFailure", "Never"',
    ]
    assert [e.type for e in errs] == ["FieldValueRequired", "FieldValueDuplicate",
                                      "FieldValueInvalid", "FieldValueNotSupported",
                                      "FieldValueNotSupported"]
    empty = {"metadata": {"name": "p"}, "spec": {"containers": []}}
    assert _messages(validate(_rt("", "Pod"), empty)) == ["spec.containers: Required value"]


def test_metadata_rules() -> None:
    cm = {"metadata": {"labels": {"bad key!": "ok", "fine": "not ok!"}}, "data": {"a b": "x"}}
    errs = validate(_rt("", "ConfigMap"), cm)
    text = _messages(errs)
    assert text[0] == "metadata.name: Required value: name or generateName is required"
    assert text[1].startswith('metadata.labels: Invalid value: "bad key!": name part must '
                              "consist of alphanumeric characters")
    assert text[2].startswith('metadata.labels: Invalid value: "not ok!": a valid label must '
                              "be an empty string")
    assert text[3].startswith('data[a b]: Invalid value: "a b": a valid config key must consist')
    assert validate(_rt("", "ConfigMap"), {"metadata": {"generateName": "cm-"}}) == []
    errs = validate(_rt("", "Namespace"), {"metadata": {"name": "Team.A"}})
    assert str(errs[0]).startswith('metadata.name: Invalid value: "Team.A": a lowercase RFC '
                                   "1123 label must consist of")
    errs = validate(_rt("", "Service"), {"metadata": {"name": "1web"},
                                         "spec": {"ports": [{"port": 80}]}})
    assert str(errs[0]).startswith('metadata.name: Invalid value: "1web": a DNS-1035 label')
    assert validate(_rt("rbac.authorization.k8s.io", "ClusterRole"),
                    {"metadata": {"name": "system:Reader"}}) == []


def test_workload_selector_must_match_template() -> None:
    deploy = examples()[("apps", "Deployment")]
    deploy["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    deploy["spec"]["replicas"] = -1
    errs = validate(_rt("apps", "Deployment"), deploy)
    assert _messages(errs) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
        "`selector` does not match template `labels`",
    ]
    del deploy["spec"]["selector"]
    assert "spec.selector: Required value" in _messages(validate(_rt("apps", "Deployment"),
                                                                 deploy))


def test_service_rules() -> None:
    svc = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 0}, {"port": 80}]}}
    assert _messages(validate(_rt("", "Service"), svc)) == [
        "spec.ports[0].name: Required value",
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ports[1].name: Required value",
    ]
    headless = {"metadata": {"name": "db"}, "spec": {"clusterIP": "None"}}
    assert validate(_rt("", "Service"), headless) == []
    assert _messages(validate(_rt("", "Service"), {"metadata": {"name": "x"}, "spec": {}})) == [
        "spec.ports: Required value"]


def test_builtin_nulls_are_zero_values_and_required_is_checked() -> None:
    pod = examples()[("", "Pod")]
    pod["spec"]["nodeName"] = None
    pod["spec"]["containers"][0]["ports"] = None
    assert validate(_rt("", "Pod"), pod) == []
    rb = examples()[("rbac.authorization.k8s.io", "RoleBinding")]
    del rb["roleRef"]
    assert _messages(validate(_rt("rbac.authorization.k8s.io", "RoleBinding"), rb)) == [
        "roleRef: Required value"]


def test_quantity_and_int_or_string() -> None:
    pod = examples()[("", "Pod")]
    pod["spec"]["containers"][0]["resources"]["limits"]["memory"] = "lots"
    pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = True
    errs = validate(_rt("", "Pod"), pod)
    by_field = {e.field: e for e in errs}
    assert set(by_field) == {"spec.containers[0].readinessProbe.httpGet.port",
                             "spec.containers[0].resources.limits.memory"}
    assert by_field["spec.containers[0].readinessProbe.httpGet.port"].type == \
        "FieldValueTypeInvalid"
    assert "quantities must match the regular expression" in \
        by_field["spec.containers[0].resources.limits.memory"].detail


def test_secret_data_must_be_base64() -> None:
    secret = examples()[("", "Secret")]
    secret["data"]["password"] = "not base64!"
    errs = validate(_rt("", "Secret"), secret)
    assert [e.field for e in errs] == ["data.password"]


def test_unknown_fields_for_strict_validation() -> None:
    pod = examples()[("", "Pod")]
    pod["spec"]["foo"] = 1
    pod["spec"]["containers"][0]["bogus"] = {"x": 1}
    pod["metadata"]["nope"] = True
    pod["metadata"]["labels"]["any"] = "label"  # maps accept any key
    assert unknown_fields_of(_rt("", "Pod"), pod) == [
        "metadata.nope", "spec.containers[0].bogus", "spec.foo"]
    # JSONSchemaProps is recursive: a typo deep inside a CRD's schema is found.
    crd = examples()[("apiextensions.k8s.io", "CustomResourceDefinition")]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["image"]["maxLenght"] = 3
    assert unknown_fields_of(_rt("apiextensions.k8s.io", "CustomResourceDefinition"), crd) == [
        "spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.image.maxLenght"]


def _crontab_rt() -> ResourceType:
    return resource_types(crd_example())[0]


def _crontab(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "c1", "namespace": "default"},
            "spec": {"cronSpec": "*/5 * * * *", **spec}}


def test_custom_resource_schema_keywords() -> None:
    rt = _crontab_rt()
    assert validate(rt, _crontab(image="busybox", replicas=3, port="http", note=None,
                                 tags=["a", "b"], extra={"any": {"thing": 1}},
                                 template={"apiVersion": "v1", "kind": "Pod"},
                                 env={"A": "b"})) == []
    bad = _crontab(cronSpec="every minute", image="x" * 65, replicas=11, policy="Maybe",
                   port=1.5, tags=["a", "a", "b", "c"], template={"kind": "Pod"},
                   env={"A": 1}, ports=[{"name": "http", "port": 80},
                                        {"name": "http", "port": 81}])
    bad["spec"]["cronSpec"] = None
    assert _messages(validate(rt, bad)) == [
        'spec.cronSpec: Invalid value: "null": spec.cronSpec in body must be of type string: '
        '"null"',
        'spec.image: Too long: may not be more than 64 bytes',
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal "
        "to 10",
        'spec.policy: Unsupported value: "Maybe": supported values: "Allow", "Forbid"',
        'spec.port: Invalid value: "number": spec.port in body must be of type '
        'integer,string: "number"',
        "spec.tags: Too many: 4: must have at most 3 items",
        'spec.tags[1]: Duplicate value: "a"',
        "spec.template.apiVersion: Required value: must not be empty",
        'spec.env.A: Invalid value: "integer": spec.env.A in body must be of type string: '
        '"integer"',
        'spec.ports[1]: Duplicate value: map[string]interface {}{"name":"http"}',
    ]
    missing = _crontab()
    del missing["spec"]["cronSpec"]
    assert _messages(validate(rt, missing)) == ["spec.cronSpec: Required value"]
    pattern = _crontab(cronSpec="never")
    assert _messages(validate(rt, pattern)) == [
        'spec.cronSpec: Invalid value: "never": spec.cronSpec in body should match '
        "'^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'"]


def test_custom_resource_unknown_fields_are_pruned_paths() -> None:
    rt = _crontab_rt()
    obj = _crontab(bogus=1, extra={"kept": True}, template={"apiVersion": "v1", "kind": "Pod",
                                                            "spec": {}})
    obj["status"] = {"replicas": 1, "other": 2}
    obj["metadata"]["labels"] = {"a": "b"}
    obj["top"] = 1
    assert sorted(unknown_fields_of(rt, obj)) == ["spec.bogus", "status.other", "top"]
    loose = resource_types(crd_example())[1]
    assert unknown_fields_of(loose, obj) == []


def test_invalid_message() -> None:
    one = [FieldError("FieldValueRequired", "spec.containers[0].image", "")]
    assert invalid_message("Pod", "web", one) == (
        'Pod "web" is invalid: spec.containers[0].image: Required value')
    two = [*one, FieldError("FieldValueInvalid", "spec.replicas", -1, "must be positive")]
    assert invalid_message("Deployment.apps", "web", two) == (
        'Deployment.apps "web" is invalid: [spec.containers[0].image: Required value, '
        "spec.replicas: Invalid value: -1: must be positive]")


@pytest.mark.parametrize("fmt,good,bad", [
    ("date-time", "2026-01-01T00:00:00Z", "yesterday"),
    ("uuid", "123e4567-e89b-12d3-a456-426614174000", "nope"),
    ("ipv4", "10.0.0.1", "10.0.0.300"),
    ("cidr", "10.0.0.0/8", "10.0.0.0"),
    ("byte", "aGVsbG8=", "***"),
])
def test_formats(fmt: str, good: str, bad: str) -> None:
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": fmt}}}
    assert validation.validate_schema(schema, {"v": good}) == []
    errs = validation.validate_schema(schema, {"v": bad})
    assert [str(e) for e in errs] == [
        f'v: Invalid value: "{bad}": v in body must be of type {fmt}: "{bad}"']


def test_requests_within_limits_and_mounts_of_declared_volumes() -> None:
    pod = examples()[("", "Pod")]
    resources = pod["spec"]["containers"][0]["resources"]
    resources["requests"]["cpu"] = "1500m"
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/d"})
    assert _messages(validate(_rt("", "Pod"), pod)) == [
        'spec.containers[0].resources.requests[cpu]: Invalid value: "1500m": must be less than '
        "or equal to cpu limit of 1",
        'spec.containers[0].volumeMounts[1].name: Not found: "data"',
    ]


def test_unknown_fields_tells_builtin_from_custom_schemas() -> None:
    from kubevisor.api import schemas

    rt = _crontab_rt()
    obj = _crontab(bogus=1)
    obj["status"] = {"replicas": 1, "other": 2}
    assert sorted(validation.unknown_fields(schemas.schema_of(rt), obj)) == [
        "spec.bogus", "status.other"]
    pod = examples()[("", "Pod")]
    pod["spec"]["overhead"] = {"cpu": "1"}
    pod["spec"]["bogus"] = 1
    assert validation.unknown_fields(schemas.schema_of(_rt("", "Pod")), pod) == ["spec.bogus"]


def test_owner_references_and_finalizers() -> None:
    cm = examples()[("", "ConfigMap")]
    cm["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1",
         "controller": True},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "",
         "controller": True},
    ]
    cm["metadata"]["finalizers"] = ["kubernetes.io/pv-protection", "bad finalizer"]
    text = _messages(validate(_rt("", "ConfigMap"), cm))
    assert text[0] == 'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty'
    assert text[1] == (
        "metadata.ownerReferences: Invalid value: []v1.OwnerReference{...}: Only one reference "
        'can have Controller set to true. Found "true" in references for "ReplicaSet/a" and '
        '"ReplicaSet/b"')
    assert text[2].startswith('metadata.finalizers[1]: Invalid value: "bad finalizer": name '
                              "part must consist of")
    assert len(text) == 3


def test_builtin_status_is_checked_for_types_not_required_fields() -> None:
    node = examples()[("", "Node")]
    del node["status"]["nodeInfo"]["machineID"]  # required in the schema, not by kube
    assert validate(_rt("", "Node"), node) == []
    node["status"]["capacity"]["cpu"] = []
    assert [e.field for e in validate(_rt("", "Node"), node)] == ["status.capacity.cpu"]
    pod = examples()[("", "Pod")]
    pod["status"] = {"phase": "Running", "containerStatuses": [{"name": "nginx", "ready": True}]}
    assert validate(_rt("", "Pod"), pod) == []
    pod["status"]["containerStatuses"][0]["restartCount"] = "many"
    assert [str(e) for e in validate(_rt("", "Pod"), pod)] == [
        'status.containerStatuses[0].restartCount: Invalid value: "string": '
        'status.containerStatuses[0].restartCount in body must be of type integer: "string"']


def test_more_builtin_rules() -> None:
    deploy = examples()[("apps", "Deployment")]
    deploy["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}
    assert _messages(validate(_rt("apps", "Deployment"), deploy)) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
        "'Recreate'"]
    deploy["spec"]["strategy"] = {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
    assert _messages(validate(_rt("apps", "Deployment"), deploy)) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "0%": may not be 0 when '
        "`maxSurge` is 0"]
    pod = examples()[("", "Pod")]
    pod["spec"]["tolerations"] = [{"key": "k", "operator": "Like", "effect": "Never"}]
    assert _messages(validate(_rt("", "Pod"), pod)) == [
        'spec.tolerations[0].operator: Unsupported value: "Like": supported values: "Equal", '
        '"Exists"',
        'spec.tolerations[0].effect: Unsupported value: "Never": supported values: '
        '"NoSchedule", "PreferNoSchedule", "NoExecute"',
    ]
    pvc = {"metadata": {"name": "c"}, "spec": {"resources": {}}}
    assert _messages(validate(_rt("", "PersistentVolumeClaim"), pvc)) == [
        "spec.accessModes: Required value: at least 1 access mode is required",
        "spec.resources[storage]: Required value",
    ]
    svc = examples()[("", "Service")]
    svc["spec"]["sessionAffinity"] = "Sticky"
    assert _messages(validate(_rt("", "Service"), svc)) == [
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", '
        '"None"']


@pytest.mark.parametrize("kind", ["ConfigMap", "Namespace", "Service"])
def test_names_with_a_trailing_newline_are_invalid(kind: str) -> None:
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "web\n"}}
    if kind != "Namespace":
        obj["metadata"]["namespace"] = "default"
    if kind == "Service":
        obj["spec"] = {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}
    fields = [e.field for e in validate(_rt("", kind), obj)]
    assert "metadata.name" in fields
