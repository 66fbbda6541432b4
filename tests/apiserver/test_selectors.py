"""Label and field selector parsing and matching (kubevisor.api.selectors)."""

from __future__ import annotations

import pytest

from kubevisor.api.selectors import (
    SelectorError,
    field_value,
    label_selector_from_spec,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "front", "n": "5"}


@pytest.mark.parametrize(("text", "matches"), [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app=db", False),
    ("missing!=x", True),
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app notin (db, cache)", True),
    ("missing notin (a)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("n>3", True),
    ("n<3", False),
    (" app = web , tier in ( front ) ", True),
    ("example.com/key!=v", True),
])
def test_label_selector_matching(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize("bad", ["app=", "=web", "app in web", "app in (a", "a b", "app=web,",
                                 "n>x", "Bad Key=1", "app=in valid"])
def test_label_selector_errors(bad: str) -> None:
    if bad == "app=":  # an empty value is valid (matches label value "")
        assert parse_label_selector(bad).matches({"app": ""})
        return
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_label_selector_round_trips_to_text() -> None:
    sel = parse_label_selector("tier notin (b,a),app=web,!x")
    assert str(sel) == "app=web,tier notin (a,b),!x"
    assert parse_label_selector(str(sel)) == sel


def test_label_selector_from_spec() -> None:
    sel = label_selector_from_spec({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["front", "back"]},
        {"key": "gone", "operator": "DoesNotExist"}]})
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web", "tier": "mid"})
    assert not label_selector_from_spec(None).matches(LABELS)
    assert label_selector_from_spec({}).matches({})
    with pytest.raises(SelectorError):
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "Near"}]})


def test_field_selector() -> None:
    obj = {"metadata": {"name": "x", "namespace": "ns"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Running"}, "flag": True}
    sel = parse_field_selector("metadata.name=x,spec.nodeName!=n2")
    fields = {f: field_value(obj, f) for f in sel.fields()}
    assert sel.matches(fields)
    sel = parse_field_selector("status.phase==Pending")
    assert not sel.matches({"status.phase": field_value(obj, "status.phase")})
    assert field_value(obj, "flag") == "true" and field_value(obj, "spec.missing") == ""
    assert parse_field_selector(r"metadata.name=a\,b").value_of("metadata.name") == "a,b"
    assert parse_field_selector("").empty
    with pytest.raises(SelectorError):
        parse_field_selector("metadata.name")
