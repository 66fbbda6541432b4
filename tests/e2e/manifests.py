"""Small manifest builders shared by the e2e suites (YAML text, as users
write it, so kubectl parses it exactly as it parses a user's file)."""

from __future__ import annotations

import json
from typing import Any


def pod(
    name: str,
    *,
    namespace: str,
    labels: dict[str, str] | None = None,
    image: str = "nginx:1.27",
    extra_spec: dict[str, Any] | None = None,
) -> str:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "image": image}], **(extra_spec or {})},
    }
    return json.dumps(obj)


def deployment(
    name: str,
    *,
    namespace: str,
    replicas: int = 2,
    image: str = "nginx:1.27",
    labels: dict[str, str] | None = None,
) -> str:
    selector = {"app": name}
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels: {json.dumps(labels or {"app": name})}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {json.dumps(selector)}
  template:
    metadata:
      labels: {json.dumps(selector)}
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox:1.36
        command: ["sleep", "infinity"]
"""


def configmap(
    name: str,
    *,
    namespace: str,
    data: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    finalizers: list[str] | None = None,
    owner: dict[str, Any] | None = None,
) -> str:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    if finalizers:
        metadata["finalizers"] = finalizers
    if owner:
        metadata["ownerReferences"] = [owner]
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data or {}}
    return json.dumps(obj)


def owner_ref(
    obj: dict[str, Any], *, block: bool = True, controller: bool = True
) -> dict[str, Any]:
    """An ownerReference pointing at ``obj`` (as read back from the server)."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": block,
    }
