"""Field sets and their fieldsV1 encoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubevisor.apiserver.patch import fieldpath as fp
from kubevisor.apiserver.patch.errors import InvalidApplyError

scalars = st.one_of(st.integers(-3, 300), st.text(alphabet='ab<&"é', max_size=3), st.booleans())
pes = st.one_of(
    st.text(alphabet="abcxyz.-/", min_size=1, max_size=4).map(fp.field_pe),
    st.dictionaries(
        st.sampled_from(["name", "port", "protocol"]), scalars, min_size=1, max_size=2
    ).map(fp.key_pe),
    scalars.map(fp.value_pe),
    st.integers(0, 20).map(fp.index_pe),
)
paths = st.lists(pes, min_size=1, max_size=4).map(tuple)
sets = st.lists(paths, max_size=12).map(lambda ps: fp.from_paths(*ps))


@settings(max_examples=300, deadline=None)
@given(sets)
def test_encode_decode_round_trip(s: fp.Trie) -> None:
    wire = fp.encode(s)
    again = fp.decode(json.loads(json.dumps(wire)))
    assert set(fp.members(again)) == set(fp.members(s))
    assert fp.encode(again) == wire


@settings(max_examples=200, deadline=None)
@given(sets, sets)
def test_set_algebra(a: fp.Trie, b: fp.Trie) -> None:
    ma, mb = set(fp.members(a)), set(fp.members(b))
    assert set(fp.members(fp.union(a, b))) == ma | mb
    assert set(fp.members(fp.difference(a, b))) == ma - mb
    assert set(fp.members(fp.intersection(a, b))) == ma & mb
    rd = set(fp.members(fp.recursive_difference(a, b)))
    assert rd == {p for p in ma if not any(p[: len(q)] == q for q in mb)}


def test_wire_form_matches_kube() -> None:
    s = fp.from_paths(
        ("f:metadata", "f:labels"),
        ("f:metadata", "f:labels", "f:app"),
        ("f:spec", "f:containers", 'k:{"name":"b"}'),
        ("f:spec", "f:containers", 'k:{"name":"b"}', "f:image"),
        ("f:spec", "f:containers", 'k:{"name":"a"}'),
        ("f:spec", "f:finalizers", 'v:"x"'),
        ("f:spec", "f:args"),
    )
    wire = fp.encode(s)
    assert json.dumps(wire, separators=(",", ":")) == (
        '{"f:metadata":{"f:labels":{".":{},"f:app":{}}},'
        '"f:spec":{"f:args":{},"f:containers":{"k:{\\"name\\":\\"a\\"}":{},'
        '"k:{\\"name\\":\\"b\\"}":{".":{},"f:image":{}}},"f:finalizers":{"v:\\"x\\"":{}}}}'
    )


def test_keys_are_canonical_and_sorted() -> None:
    assert (
        fp.key_pe({"protocol": "TCP", "containerPort": 80})
        == 'k:{"containerPort":80,"protocol":"TCP"}'
    )
    assert fp.value_pe("<a&b>") == 'v:"\\u003ca\\u0026b\\u003e"'
    decoded = fp.decode({'k:{"protocol": "TCP", "containerPort": 80}': {}})
    assert fp.has(decoded, ('k:{"containerPort":80,"protocol":"TCP"}',))
    order = sorted(
        [fp.index_pe(2), fp.value_pe("a"), fp.key_pe({"n": 1}), fp.field_pe("z"), fp.value_pe(3)],
        key=fp.sort_key,
    )
    assert order == ["f:z", 'k:{"n":1}', "v:3", 'v:"a"', "i:2"]


def test_path_strings_for_conflict_messages() -> None:
    assert fp.path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert (
        fp.path_string(("f:spec", "f:containers", 'k:{"name":"nginx"}', "f:image"))
        == '.spec.containers[name="nginx"].image'
    )
    assert (
        fp.path_string(("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}'))
        == '.ports[containerPort=80,protocol="TCP"]'
    )
    assert fp.path_string(("f:finalizers", 'v:"x"')) == '.finalizers[="x"]'


@pytest.mark.parametrize("bad", [[], {"f:a": 1}, {"x:a": {}}, {"k:{nope": {}}])
def test_malformed_fields_v1(bad: object) -> None:
    with pytest.raises(InvalidApplyError):
        fp.decode(bad)
