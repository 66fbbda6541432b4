"""Upstream schemas from kubernetes-validate in kube-apiserver's OpenAPI v3 form."""

from __future__ import annotations

import json
from typing import Any

from kubevisor.api import schemas


def _walk(node: Any) -> Any:
    """Every schema node below ``node`` (schema-aware: property names are skipped)."""
    if not isinstance(node, dict):
        return
    yield node
    for sub in (node.get("properties") or {}).values():
        yield from _walk(sub)
    for key in ("items", "additionalProperties", "not"):
        yield from _walk(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key) or ():
            yield from _walk(sub)


def test_converted_to_openapi_v3_form() -> None:
    all_schemas = schemas.component_schemas()
    assert len(all_schemas) > 500
    for name, schema in all_schemas.items():
        for node in _walk(schema):
            typ = node.get("type")
            assert typ is None or isinstance(typ, str), name
            ref = node.get("$ref")
            if isinstance(ref, str):
                assert ref.startswith("#/components/schemas/"), (name, ref)
                assert ref.removeprefix("#/components/schemas/") in all_schemas
                assert set(node) == {"$ref"}, (name, node)


def test_special_types() -> None:
    int_or_string = schemas.component(schemas.INT_OR_STRING)
    assert int_or_string["format"] == "int-or-string"
    assert int_or_string["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schemas.component(schemas.QUANTITY)["oneOf"] == [{"type": "string"},
                                                            {"type": "number"}]
    time = schemas.component("io.k8s.apimachinery.pkg.apis.meta.v1.Time")
    assert time == {**time, "type": "string", "format": "date-time"}
    pod = schemas.component("io.k8s.api.core.v1.Pod")
    assert "enum" not in pod["properties"]["kind"]
    spec = pod["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]
    assert spec["description"].startswith("Specification of the desired behavior")
    containers = schemas.resolve(spec)["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}


def test_unknown_schema() -> None:
    try:
        schemas.component("io.k8s.api.core.v1.Nope")
    except schemas.SchemaError as exc:
        assert "Nope" in str(exc)
    else:
        raise AssertionError("expected SchemaError")
    json.dumps(schemas.component("io.k8s.api.core.v1.Pod"))  # plain JSON data
