"""prefix_end: the exclusive upper bound every backend uses for prefix ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubevisor.store.base import prefix_end

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=6)


@given(prefix=text, key=text)
def test_prefix_range_holds_exactly_the_keys_with_the_prefix(prefix: str, key: str) -> None:
    end = prefix_end(prefix)
    inside = key >= prefix and (end is None or key < end)
    assert inside == key.startswith(prefix)
    # the same order holds for the UTF-8 bytes etcd compares
    if end is not None:
        assert (key.encode() < end.encode()) == (key < end)


def test_edges() -> None:
    assert prefix_end("") is None
    assert prefix_end("/a/") == "/a0"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("\ud7ff") == "\ue000"
