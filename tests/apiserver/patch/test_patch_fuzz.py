"""Hostile input: every patch function either returns a dict or raises a
PatchError (which the apiserver turns into a 4xx), never anything else."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubevisor.apiserver.patch import (
    PatchError,
    apply,
    json_patch,
    merge_patch,
    strategic_merge_patch,
    update_managed_fields,
)
from tests.apiserver.patch.k8s_schemas import DEPLOYMENT, schemas

KEYS = st.sampled_from(
    [
        "metadata",
        "spec",
        "template",
        "containers",
        "name",
        "image",
        "env",
        "value",
        "ports",
        "containerPort",
        "labels",
        "finalizers",
        "strategy",
        "rollingUpdate",
        "type",
        "volumes",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/env",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder/finalizers",
        "replicas",
        "selector",
        "apiVersion",
        "kind",
        "managedFields",
        "x",
    ]
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.sampled_from(["replace", "delete", "merge", "a", "nginx", ""]),
)
VALUES = st.recursive(
    LEAVES,
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(KEYS, kids, max_size=4)),
    max_leaves=25,
)
DOCS = st.dictionaries(KEYS, VALUES, max_size=5)
SETTINGS = settings(
    max_examples=int(os.environ.get("PATCH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _ok(fn: Any, *args: Any, **kw: Any) -> None:
    try:
        out = fn(*args, **kw)
    except PatchError as exc:
        assert exc.status()["code"] in (400, 409, 413, 415, 422)
        return
    assert isinstance(out, dict | list)


@SETTINGS
@given(DOCS, DOCS)
def test_strategic_merge_never_crashes(obj: dict[str, Any], patch: dict[str, Any]) -> None:
    k = schemas()
    _ok(strategic_merge_patch, obj, patch, schema=k.root(DEPLOYMENT), defs=k.defs)


@SETTINGS
@given(DOCS, DOCS, st.booleans())
def test_apply_and_managed_fields_never_crash(
    live: dict[str, Any], cfg: dict[str, Any], force: bool
) -> None:
    k = schemas()
    cfg = {**cfg, "apiVersion": "apps/v1"}
    _ok(
        apply,
        live or None,
        cfg,
        manager="m",
        force=force,
        schema=k.root(DEPLOYMENT),
        defs=k.defs,
        now="2024-01-01T00:00:00Z",
    )
    _ok(
        update_managed_fields,
        live or None,
        cfg,
        manager="m",
        api_version="apps/v1",
        now="2024-01-01T00:00:00Z",
        schema=k.root(DEPLOYMENT),
        defs=k.defs,
    )


@SETTINGS
@given(
    DOCS,
    st.one_of(
        VALUES,
        st.lists(
            st.dictionaries(
                st.sampled_from(["op", "path", "from", "value"]),
                st.one_of(st.sampled_from(["add", "remove", "/spec", "/x/0", "", "/"]), VALUES),
            ),
            max_size=3,
        ),
    ),
)
def test_json_and_merge_patch_never_crash(obj: dict[str, Any], patch: Any) -> None:
    _ok(json_patch, obj, patch)
    _ok(merge_patch, obj, patch)


def test_deep_nesting_is_a_bad_request() -> None:
    k = schemas()
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    for fn, kw in (
        (strategic_merge_patch, {"schema": k.root(DEPLOYMENT), "defs": k.defs}),
        (
            apply,
            {
                "manager": "m",
                "force": False,
                "schema": None,
                "defs": None,
                "now": "2024-01-01T00:00:00Z",
            },
        ),
    ):
        _ok(fn, deep, {"apiVersion": "v1", **deep}, **kw)
    _ok(
        update_managed_fields,
        None,
        deep,
        manager="m",
        api_version="v1",
        now="2024-01-01T00:00:00Z",
        schema=None,
        defs=None,
    )
    _ok(merge_patch, deep, deep)
