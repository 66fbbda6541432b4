"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386) as kube-apiserver applies them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubevisor.apiserver.patch import (
    BadPatchError,
    PatchNotApplicableError,
    TooManyOperationsError,
    json_patch,
    merge_patch,
)

CM: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cm", "labels": {"a": "1"}},
    "data": {"k": "v", "list": "x"},
}


def test_json_patch_ops_apply_and_input_is_untouched() -> None:
    before = copy.deepcopy(CM)
    out = json_patch(
        CM,
        b'[{"op":"add","path":"/metadata/labels/b","value":"2"},'
        b'{"op":"replace","path":"/data/k","value":"w"},'
        b'{"op":"remove","path":"/data/list"},'
        b'{"op":"test","path":"/metadata/name","value":"cm"}]',
    )
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert out["data"] == {"k": "w"}
    assert CM == before


def test_json_patch_failed_test_is_422_with_kube_message() -> None:
    with pytest.raises(PatchNotApplicableError) as info:
        json_patch(CM, [{"op": "test", "path": "/data/k", "value": "nope"}])
    err = info.value
    assert err.code == 422
    status = err.status()
    assert status["reason"] == "Invalid"
    assert status["message"] == "the server rejected our request due to an error in our request"
    assert "not equal" in err.detail


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "remove", "path": "/data/missing"}],
        [{"op": "replace", "path": "/spec/x", "value": 1}],
        [{"op": "add", "path": "/metadata/labels/a/b", "value": 1}],
        [{"op": "bogus", "path": "/data"}],
        [{"path": "/data"}],
        [{"op": "move", "from": "/nope", "path": "/data/z"}],
    ],
)
def test_json_patch_that_does_not_apply_is_422(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(PatchNotApplicableError):
        json_patch(CM, ops)


@pytest.mark.parametrize("body", [b"{", b'{"op":"add"}', b'"x"', b"[1]"])
def test_json_patch_malformed_is_400(body: bytes) -> None:
    with pytest.raises(BadPatchError) as info:
        json_patch(CM, body)
    assert info.value.status()["code"] == 400
    assert info.value.status()["reason"] == "BadRequest"


def test_json_patch_operation_limit_is_413() -> None:
    ops = [{"op": "test", "path": "/kind", "value": "ConfigMap"}] * 10001
    with pytest.raises(TooManyOperationsError) as info:
        json_patch(CM, ops)
    assert info.value.code == 413
    assert "10000, got 10001" in info.value.message


def test_merge_patch_null_deletes_and_lists_replace() -> None:
    obj = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [1, 2], "x": {"y": 1}}}
    out = merge_patch(
        obj, b'{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"ports":[3],"x":null}}'
    )
    assert out == {"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"ports": [3]}}
    assert obj["metadata"]["labels"] == {"a": "1", "b": "2"}


@pytest.mark.parametrize("body", [b"[1]", b"1", b"nope"])
def test_merge_patch_must_be_an_object(body: bytes) -> None:
    with pytest.raises(BadPatchError):
        merge_patch(CM, body)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
json_value = st.recursive(
    json_leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.sampled_from("abcd"), kids, max_size=4)
    ),
    max_leaves=12,
)
json_obj = st.dictionaries(st.sampled_from("abcd"), json_value, max_size=4)


def _has_null(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, dict):
        return any(_has_null(x) for x in v.values())
    return False


@settings(max_examples=200, deadline=None)
@given(json_obj, json_obj)
def test_merge_patch_is_idempotent(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge_patch(doc, patch)
    assert merge_patch(once, patch) == once


@settings(max_examples=200, deadline=None)
@given(json_obj, json_obj)
def test_merge_patch_without_nulls_lands_every_patch_value(
    doc: dict[str, Any], patch: dict[str, Any]
) -> None:
    if _has_null(patch):
        return
    out = merge_patch(doc, patch)

    def contains(big: Any, small: Any) -> bool:
        if isinstance(small, dict):
            return isinstance(big, dict) and all(
                k in big and contains(big[k], v) for k, v in small.items()
            )
        return bool(big == small)

    assert contains(out, patch)
