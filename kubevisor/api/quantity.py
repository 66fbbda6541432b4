"""Kubernetes resource quantities (``500m``, ``1.5Gi``, ``2e3``) as exact decimals.

``parse_quantity`` follows ``k8s.io/apimachinery/pkg/api/resource``:
binary suffixes Ki…Ei, decimal suffixes n u m k M G T P E, or a decimal
exponent. Callers: ``api.rules`` (requests must not exceed limits) and
controllers that compare or add resources (scheduling, quota).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from kubevisor.api.errors import QuantityError

_FORM = re.compile(r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}



def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of a quantity (``"100m"`` -> ``Decimal("0.1")``)."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    m = _FORM.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    number, suffix = m.group(1), m.group(2) or ""
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise QuantityError(f"not a quantity: {value!r}") from exc
    if len(suffix) > 1 and suffix[0] in "eE":
        return base.scaleb(int(suffix[1:]))
    return base * _SUFFIX[suffix]
