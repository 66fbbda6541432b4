"""Resource quantities parsed exactly, as apimachinery's resource.Quantity."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kubevisor.api.quantity import QuantityError, parse_quantity


@pytest.mark.parametrize(("text", "value"), [
    ("1", "1"), ("500m", "0.5"), ("100m", "0.1"), ("1.5", "1.5"), ("2k", "2000"),
    ("1Ki", "1024"), ("128Mi", str(128 * 2**20)), ("1Gi", str(2**30)), ("1e3", "1000"),
    ("1E3", "1000"), ("2E", "2e18"), ("5n", "5e-9"), ("-1", "-1"), (".5", "0.5"),
    (3, "3"), (0.25, "0.25"),
])
def test_parse(text: str | int | float, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "lots", "1.2.3", "1KiB", "Mi", "1 Gi", "e3"])
def test_invalid(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_bool_is_not_a_quantity() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(True)
