"""Server-side defaults kube-apiserver applies to built-in kinds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Defaulter = Callable[[dict[str, Any]], None]


def defaulter_for(group: str, kind: str) -> Defaulter | None:
    """The defaulting function of a built-in kind, or None."""
    return None
