"""The real Kubernetes v1.32 schemas for the patch tests.

They come from the pinned ``kubernetes-validate`` package (JSON-schema form
with ``$defs``); refs are rewritten to the OpenAPI v3 form the apiserver
passes (``#/components/schemas/<name>``) so the tests exercise that form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate

_FILE = (
    Path(kubernetes_validate.__file__).parent
    / "kubernetes-json-schema"
    / "v1.32.0-local"
    / "_definitions.json"
)


class K8sSchemas:
    def __init__(self) -> None:
        text = _FILE.read_text().replace("#/$defs/", "#/components/schemas/")
        self.defs: dict[str, dict[str, Any]] = json.loads(text)["$defs"]
        self._roots: dict[str, dict[str, Any]] = {}

    def root(self, name: str) -> dict[str, Any]:
        """The root schema for a kind, e.g. ``root("io.k8s.api.core.v1.Pod")``."""
        if name not in self._roots:
            self._roots[name] = {"allOf": [{"$ref": f"#/components/schemas/{name}"}]}
        return self._roots[name]


_SCHEMAS: list[K8sSchemas] = []


def schemas() -> K8sSchemas:
    """Loaded once per process."""
    if not _SCHEMAS:
        _SCHEMAS.append(K8sSchemas())
    return _SCHEMAS[0]


POD = "io.k8s.api.core.v1.Pod"
DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
SERVICE = "io.k8s.api.core.v1.Service"
CONFIGMAP = "io.k8s.api.core.v1.ConfigMap"
