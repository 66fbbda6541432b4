"""Hostile and malformed objects never make the api layer raise: defaulting,
validation, unknown-field detection and printing return, whatever the input
(the apiserver turns their results into 4xx, never a 500)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubevisor.api import printers, validation
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.crd import resource_types, validate_crd
from tests.api.examples import crd_example, examples

REGISTRY = builtin_registry()
for _rt in resource_types(crd_example()):
    REGISTRY.add(_rt)
TYPES = sorted(REGISTRY, key=lambda rt: (rt.group, rt.version, rt.kind))
NOW = datetime(2026, 1, 1, tzinfo=UTC)

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True), st.text(max_size=20))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=25,
)
FIELD_NAMES = st.sampled_from([
    "metadata", "spec", "status", "data", "containers", "name", "image", "ports",
    "selector", "template", "labels", "replicas", "type", "roleRef", "subjects", "versions",
    "schema", "openAPIV3Schema", "names", "group", "ownerReferences", "finalizers", "items",
])


def _mutations() -> st.SearchStrategy[list[tuple[list[str], Any]]]:
    return st.lists(st.tuples(st.lists(FIELD_NAMES, min_size=1, max_size=4), JSON_VALUES),
                    max_size=4)


def _mutate(obj: dict[str, Any], changes: list[tuple[list[str], Any]]) -> None:
    for path, value in changes:
        cur: Any = obj
        for key in path[:-1]:
            nxt = cur.get(key) if isinstance(cur, dict) else None
            if not isinstance(nxt, dict):
                break
            cur = nxt
        if isinstance(cur, dict):
            cur[path[-1]] = value


def _exercise(rt: Any, obj: Any) -> None:
    if rt.defaulter is not None and isinstance(obj, dict):
        rt.defaulter(obj)
    if isinstance(obj, dict):
        for err in validation.validate(rt, obj):
            assert str(err)
        validation.unknown_fields_of(rt, obj)
        printers.table_cells(rt, obj, NOW)
        if rt.kind == "CustomResourceDefinition":
            validate_crd(obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TYPES), _mutations())
def test_mutated_examples(rt: Any, changes: list[tuple[list[str], Any]]) -> None:
    base = examples().get((rt.group, rt.kind)) or {
        "apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "c"}, "spec": {"cronSpec": "* * * * *"}}
    obj = copy.deepcopy(base)
    _mutate(obj, changes)
    _exercise(rt, obj)
    old = copy.deepcopy(base)
    if rt.defaulter is not None:
        rt.defaulter(old)
    if isinstance(obj, dict):
        validation.validate_update(rt, old, obj)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TYPES), st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=5))
def test_random_objects(rt: Any, obj: dict[str, Any]) -> None:
    _exercise(rt, obj)


def test_wrongly_typed_spec_is_reported_not_replaced() -> None:
    rt = REGISTRY.by_kind("", "v1", "Pod")
    assert rt is not None and rt.defaulter is not None
    obj: dict[str, Any] = {"metadata": {"name": "p"}, "spec": "nope"}
    rt.defaulter(obj)
    assert obj["spec"] == "nope"
    assert [e.field for e in validation.validate(rt, obj)][:1] == ["spec"]
