"""Kubernetes JSONPath as CRD printer columns use it, and cell formatting."""

from __future__ import annotations

from typing import Any

import pytest

from kubevisor.api.jsonpath import JSONPathError, evaluate, format_cell

OBJ: dict[str, Any] = {
    "metadata": {"name": "x", "labels": {"app": "web", "app.kubernetes.io/name": "nginx"}},
    "spec": {"replicas": 3, "ratio": 0.5, "enabled": True,
             "containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
                            {"name": "b", "image": "redis", "ports": [{"containerPort": 6379}]}]},
    "status": {"conditions": [{"type": "Ready", "status": "True", "count": 3},
                              {"type": "Synced", "status": "False", "count": 1}]},
}


@pytest.mark.parametrize(("path", "expected"), [
    (".spec.replicas", [3]),
    ("{.spec.replicas}", [3]),
    ("$.spec.replicas", [3]),
    (".metadata.labels.app", ["web"]),
    (r".metadata.labels.app\.kubernetes\.io/name", ["nginx"]),
    (".metadata.labels['app.kubernetes.io/name']", ["nginx"]),
    ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
    (".status.conditions[?(@.type!='Ready')].type", ["Synced"]),
    (".status.conditions[?(@.count>2)].type", ["Ready"]),
    (".status.conditions[?(@.count<=1)].type", ["Synced"]),
    (".status.conditions[?(@.count)].type", ["Ready", "Synced"]),
    (".spec.containers[*].image", ["nginx", "redis"]),
    (".spec.containers[-1].name", ["b"]),
    (".spec.containers[0:1].name", ["a"]),
    (".spec.containers[5].name", []),
    ("..containerPort", [80, 6379]),
    (".spec.containers[*].ports[0].containerPort", [80, 6379]),
    (".metadata.*", ["x", {"app": "web", "app.kubernetes.io/name": "nginx"}]),
    (".spec.missing.deeper", []),
    (".metadata.name.nope", []),
])
def test_evaluate(path: str, expected: list[Any]) -> None:
    assert evaluate(OBJ, path) == expected


def test_bad_paths() -> None:
    with pytest.raises(JSONPathError):
        evaluate(OBJ, ".spec.containers[0")
    with pytest.raises(JSONPathError):
        evaluate(OBJ, ".spec.containers[?(@.name ~ 'a')]")


def test_format_cell_like_the_crd_table_converter() -> None:
    def age(ts: str) -> str:
        return f"age-of-{ts}"

    assert format_cell("integer", [3.0], human_age=age) == 3
    assert format_cell("integer", ["3"], human_age=age) is None
    assert format_cell("number", [3], human_age=age) == 3.0
    assert format_cell("boolean", [True], human_age=age) is True
    assert format_cell("boolean", ["true"], human_age=age) is None
    assert format_cell("string", [3], human_age=age) == "3"
    assert format_cell("string", [{"a": 1}], human_age=age) == '{"a":1}'
    assert format_cell("string", [True], human_age=age) == "true"
    assert format_cell("date", ["2026-01-01T00:00:00Z"], human_age=age) == \
        "age-of-2026-01-01T00:00:00Z"
    assert format_cell("string", [], human_age=age) is None
    assert format_cell("string", ["first", "second"], human_age=age) == "first"
