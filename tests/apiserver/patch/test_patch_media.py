"""PATCH media types: dispatch, 415 for strategic merge on custom resources, apply bodies."""

from __future__ import annotations

import pytest

from kubevisor.apiserver.patch import (
    BadPatchError,
    UnsupportedPatchTypeError,
    decode_apply,
    patch_object,
    patch_types,
)
from tests.apiserver.patch.k8s_schemas import CONFIGMAP, K8sSchemas

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json-patch+json", b'[{"op":"add","path":"/data/b","value":"2"}]'),
        ("application/merge-patch+json; charset=utf-8", b'{"data":{"b":"2"}}'),
        ("application/strategic-merge-patch+json", b'{"data":{"b":"2"}}'),
    ],
)
def test_dispatch(k8s: K8sSchemas, content_type: str, body: bytes) -> None:
    out = patch_object(
        CM, body, content_type, schema=k8s.root(CONFIGMAP), defs=k8s.defs, custom=False
    )
    assert out["data"] == {"a": "1", "b": "2"}


def test_strategic_merge_on_custom_resource_is_415() -> None:
    with pytest.raises(UnsupportedPatchTypeError) as info:
        patch_object(
            CM, b"{}", "application/strategic-merge-patch+json", schema=None, defs=None, custom=True
        )
    status = info.value.status()
    assert status["code"] == 415 and status["reason"] == "UnsupportedMediaType"
    assert status["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )
    assert "application/strategic-merge-patch+json" in patch_types(custom=False)


def test_unknown_content_type_is_415() -> None:
    with pytest.raises(UnsupportedPatchTypeError):
        patch_object(CM, b"{}", "text/plain", schema=None, defs=None, custom=False)


def test_decode_apply_yaml_and_json() -> None:
    assert (
        decode_apply(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")["kind"]
        == "ConfigMap"
    )
    assert decode_apply('{"kind": "ConfigMap"}') == {"kind": "ConfigMap"}
    for bad in (b"- a\n- b\n", b"key: [unclosed", b""):
        with pytest.raises(BadPatchError):
            decode_apply(bad)
