"""Decoding of ``application/vnd.kubernetes.protobuf`` request bodies.

kubectl's typed clients (``kubectl create namespace|configmap|secret|
serviceaccount|deployment|job|service|role|rolebinding|clusterrole|
clusterrolebinding|quota``, ``kubectl certificate approve|deny`` and typed
deletes) send bodies in Kubernetes'
protobuf envelope: the magic ``k8s\\0`` then a ``runtime.Unknown`` message
(typeMeta, raw object bytes). Responses are always JSON (those clients
also accept it). This module reads the protobuf wire format and turns the
raw bytes into the JSON-shaped object through a table of the wire field
numbers of the message types those commands produce; fields not in the
table are dropped. Zero values of non-pointer fields (which Go always
encodes) are dropped as JSON ``omitempty`` would. Called by
``http.decode_body``; failures raise :class:`ProtobufError`.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

JSON = dict[str, Any]


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf message."""


# Field tables: number -> (json name, type). Types: s string, i integer,
# b bool, y bytes (base64 in JSON), t metav1.Time, q Quantity, ios IntOrString,
# ms map<string,string>, my map<string,bytes>, mq map<string,Quantity>, or a
# message name. A leading "*" marks a repeated field; a trailing "!" a Go
# pointer field whose zero value is meaningful and kept.
_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {
        1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"),
        5: ("uid", "s"), 6: ("resourceVersion", "s"), 7: ("generation", "i"),
        8: ("creationTimestamp", "t"), 9: ("deletionTimestamp", "t"),
        10: ("deletionGracePeriodSeconds", "i!"), 11: ("labels", "ms"),
        12: ("annotations", "ms"), 13: ("ownerReferences", "*OwnerReference"),
        14: ("finalizers", "*s"),
    },
    "OwnerReference": {
        1: ("kind", "s"), 3: ("name", "s"), 4: ("uid", "s"), 5: ("apiVersion", "s"),
        6: ("controller", "b!"), 7: ("blockOwnerDeletion", "b!"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "*s")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "ms"), 3: ("binaryData", "my"),
                  4: ("immutable", "b!")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "my"), 3: ("type", "s"),
               4: ("stringData", "ms"), 5: ("immutable", "b!")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "*ObjectReference"),
                       3: ("imagePullSecrets", "*LocalObjectReference"),
                       4: ("automountServiceAccountToken", "b!")},
    "ObjectReference": {1: ("kind", "s"), 2: ("namespace", "s"), 3: ("name", "s"),
                        4: ("uid", "s"), 5: ("apiVersion", "s"), 6: ("resourceVersion", "s"),
                        7: ("fieldPath", "s")},
    "LocalObjectReference": {1: ("name", "s")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec")},
    "DeploymentSpec": {1: ("replicas", "i!"), 2: ("selector", "LabelSelector"),
                       3: ("template", "PodTemplateSpec"), 4: ("strategy", "DeploymentStrategy"),
                       5: ("minReadySeconds", "i"), 6: ("revisionHistoryLimit", "i!"),
                       7: ("paused", "b"), 9: ("progressDeadlineSeconds", "i!")},
    "DeploymentStrategy": {1: ("type", "s"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "JobSpec": {1: ("parallelism", "i!"), 2: ("completions", "i!"),
                3: ("activeDeadlineSeconds", "i!"), 4: ("selector", "LabelSelector"),
                5: ("manualSelector", "b!"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "i!"), 8: ("ttlSecondsAfterFinished", "i!"),
                9: ("completionMode", "s"), 10: ("suspend", "b!"),
                12: ("backoffLimitPerIndex", "i!"), 13: ("maxFailedIndexes", "i!"),
                14: ("podReplacementPolicy", "s"), 15: ("managedBy", "s")},
    "LabelSelector": {1: ("matchLabels", "ms"),
                      2: ("matchExpressions", "*LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "*s")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        2: ("containers", "*Container"), 3: ("restartPolicy", "s"),
        4: ("terminationGracePeriodSeconds", "i!"), 5: ("activeDeadlineSeconds", "i!"),
        6: ("dnsPolicy", "s"), 7: ("nodeSelector", "ms"), 8: ("serviceAccountName", "s"),
        9: ("serviceAccount", "s"), 10: ("nodeName", "s"), 11: ("hostNetwork", "b"),
        12: ("hostPID", "b"), 13: ("hostIPC", "b"),
        15: ("imagePullSecrets", "*LocalObjectReference"), 16: ("hostname", "s"),
        17: ("subdomain", "s"), 19: ("schedulerName", "s"), 20: ("initContainers", "*Container"),
        21: ("automountServiceAccountToken", "b!"), 22: ("tolerations", "*Toleration"),
        24: ("priorityClassName", "s"), 25: ("priority", "i!"), 29: ("runtimeClassName", "s"),
        30: ("enableServiceLinks", "b!"),
    },
    "Container": {
        1: ("name", "s"), 2: ("image", "s"), 3: ("command", "*s"), 4: ("args", "*s"),
        5: ("workingDir", "s"), 6: ("ports", "*ContainerPort"), 7: ("env", "*EnvVar"),
        8: ("resources", "ResourceRequirements"), 9: ("volumeMounts", "*VolumeMount"),
        13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"), 16: ("stdin", "b"),
        17: ("stdinOnce", "b"), 18: ("tty", "b"), 20: ("terminationMessagePolicy", "s"),
    },
    "ContainerPort": {1: ("name", "s"), 2: ("hostPort", "i"), 3: ("containerPort", "i"),
                      4: ("protocol", "s"), 5: ("hostIP", "s")},
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "ResourceRequirements": {1: ("limits", "mq"), 2: ("requests", "mq")},
    "VolumeMount": {1: ("name", "s"), 2: ("readOnly", "b"), 3: ("mountPath", "s"),
                    4: ("subPath", "s")},
    "Toleration": {1: ("key", "s"), 2: ("operator", "s"), 3: ("value", "s"), 4: ("effect", "s"),
                   5: ("tolerationSeconds", "i!")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec")},
    "ServiceSpec": {
        1: ("ports", "*ServicePort"), 2: ("selector", "ms"), 3: ("clusterIP", "s"),
        4: ("type", "s"), 5: ("externalIPs", "*s"), 7: ("sessionAffinity", "s"),
        8: ("loadBalancerIP", "s"), 9: ("loadBalancerSourceRanges", "*s"),
        10: ("externalName", "s"), 11: ("externalTrafficPolicy", "s"),
        12: ("healthCheckNodePort", "i"), 13: ("publishNotReadyAddresses", "b"),
        17: ("ipFamilyPolicy", "s"), 18: ("clusterIPs", "*s"), 19: ("ipFamilies", "*s"),
        20: ("allocateLoadBalancerNodePorts", "b!"), 21: ("loadBalancerClass", "s"),
        22: ("internalTrafficPolicy", "s"),
    },
    "ServicePort": {1: ("name", "s"), 2: ("protocol", "s"), 3: ("port", "i"),
                    4: ("targetPort", "ios"), 5: ("nodePort", "i"), 6: ("appProtocol", "s")},
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "*PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "*PolicyRule"),
                    3: ("aggregationRule", "AggregationRule")},
    "AggregationRule": {1: ("clusterRoleSelectors", "*LabelSelector")},
    "PolicyRule": {1: ("verbs", "*s"), 2: ("apiGroups", "*s"), 3: ("resources", "*s"),
                   4: ("resourceNames", "*s"), 5: ("nonResourceURLs", "*s")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "*Subject"),
                    3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "*Subject"),
                           3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "s"), 2: ("apiGroup", "s"), 3: ("name", "s"), 4: ("namespace", "s")},
    "RoleRef": {1: ("apiGroup", "s"), 2: ("kind", "s"), 3: ("name", "s")},
    "ResourceQuota": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ResourceQuotaSpec")},
    "ResourceQuotaSpec": {1: ("hard", "mq"), 2: ("scopes", "*s")},
    "CertificateSigningRequest": {1: ("metadata", "ObjectMeta"),
                                  2: ("spec", "CertificateSigningRequestSpec"),
                                  3: ("status", "CertificateSigningRequestStatus")},
    "CertificateSigningRequestSpec": {1: ("request", "y"), 2: ("username", "s"), 3: ("uid", "s"),
                                      4: ("groups", "*s"), 5: ("usages", "*s"),
                                      7: ("signerName", "s"), 8: ("expirationSeconds", "i!")},
    "CertificateSigningRequestStatus": {
        1: ("conditions", "*CertificateSigningRequestCondition"), 2: ("certificate", "y")},
    "CertificateSigningRequestCondition": {1: ("type", "s"), 2: ("reason", "s"),
                                           3: ("message", "s"), 4: ("lastUpdateTime", "t"),
                                           5: ("lastTransitionTime", "t"), 6: ("status", "s")},
    "DeleteOptions": {1: ("gracePeriodSeconds", "i!"), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", "b!"), 4: ("propagationPolicy", "s"),
                      5: ("dryRun", "*s")},
    "Preconditions": {1: ("uid", "s"), 2: ("resourceVersion", "s")},
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "y"), 3: ("contentEncoding", "s"),
                4: ("contentType", "s")},
    "TypeMeta": {1: ("apiVersion", "s"), 2: ("kind", "s")},
    "Time": {1: ("seconds", "i"), 2: ("nanos", "i")},
    "Quantity": {1: ("string", "s")},
    "IntOrString": {1: ("type", "i"), 2: ("intVal", "i"), 3: ("strVal", "s")},
    "Entry": {1: ("key", "s"), 2: ("value", "y")},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) in order; length-delimited values are bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            value = data[pos:pos + length]
            pos += length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if number == 0:
            raise ProtobufError("field number 0")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "s":
        if wire != 2:
            raise ProtobufError("expected a string")
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise ProtobufError("invalid UTF-8 in a string") from exc
    if kind == "i":
        if wire != 0:
            raise ProtobufError("expected an integer")
        return _signed(value)
    if kind == "b":
        if wire != 0:
            raise ProtobufError("expected a bool")
        return bool(value)
    if kind == "y":
        if wire != 2:
            raise ProtobufError("expected bytes")
        return bytes(value)
    raise AssertionError(kind)


def _time(data: bytes) -> str | None:
    from datetime import UTC, datetime

    msg = decode_message("Time", data)
    if not msg:
        return None
    seconds = msg.get("seconds", 0)
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError) as exc:
        raise ProtobufError("timestamp out of range") from exc


def _value(kind: str, wire: int, value: Any) -> Any:
    if kind in ("s", "i", "b"):
        return _scalar(kind, wire, value)
    if kind == "y":
        return base64.b64encode(_scalar("y", wire, value)).decode()
    if wire != 2:
        raise ProtobufError(f"expected a message for {kind}")
    if kind == "t":
        return _time(value)
    if kind == "q":
        return decode_message("Quantity", value).get("string", "0")
    if kind == "ios":
        ios = decode_message("IntOrString", value)
        return ios.get("strVal", "") if ios.get("type") == 1 else ios.get("intVal", 0)
    return decode_message(kind, value)


def _is_zero(value: Any) -> bool:
    return value is None or value == "" or value == 0 or value is False


def decode_message(name: str, data: bytes) -> JSON:
    table = _MESSAGES[name]
    out: JSON = {}
    for number, wire, value in _fields(data):
        spec = table.get(number)
        if spec is None:
            continue
        field, kind = spec
        keep = kind.endswith("!")
        kind = kind.rstrip("!")
        if kind in ("ms", "my", "mq"):
            if wire != 2:
                raise ProtobufError(f"expected a map entry for {field}")
            entry = _fields(value)
            key = val = None
            for n, w, v in entry:
                if n == 1:
                    key = _scalar("s", w, v)
                elif n == 2:
                    val = v
            if key is None:
                continue
            if kind == "ms":
                item: Any = val.decode() if isinstance(val, bytes) else ""
            elif kind == "my":
                item = base64.b64encode(val or b"").decode()
            else:
                item = decode_message("Quantity", val or b"").get("string", "0")
            out.setdefault(field, {})[key] = item
            continue
        if kind.startswith("*"):
            inner = kind[1:]
            if inner in ("s", "i", "b") and wire == 2 and inner != "s":
                values = [_signed(v) if inner == "i" else bool(v)
                          for _n, _w, v in _packed(value)]
                out.setdefault(field, []).extend(values)
            else:
                out.setdefault(field, []).append(_value(inner, wire, value))
            continue
        decoded = _value(kind, wire, value)
        if not keep and _is_zero(decoded):
            out.pop(field, None)
            continue
        if decoded is None:
            continue
        out[field] = decoded
    return out


def _packed(data: bytes) -> list[tuple[int, int, int]]:
    out, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        out.append((0, 0, value))
    return out


def decode_object(body: bytes) -> JSON:
    """A protobuf-encoded Kubernetes object as JSON-shaped data."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the protobuf body does not start with the Kubernetes magic prefix")
    envelope = decode_message("Unknown", body[len(MAGIC):])
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    raw = base64.b64decode(envelope.get("raw", ""))
    if kind not in _MESSAGES or kind in ("Unknown", "TypeMeta", "Time", "Quantity",
                                         "IntOrString", "Entry"):
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported; send JSON")
    obj = decode_message(kind, raw)
    result: JSON = {}
    if type_meta.get("apiVersion"):
        result["apiVersion"] = type_meta["apiVersion"]
    result["kind"] = kind
    result.update(obj)
    return result
