"""Resource amounts as integers: what a pod requests, what a node offers.

CPU is counted in millicores and everything else in whole units (bytes for
memory and ephemeral-storage), rounded up as kube-scheduler rounds
quantities (``MilliValue``/``Value``). :func:`pod_requests` is upstream's
``PodRequests``: the sum over containers, the maximum with each init
container (restartable "sidecar" init containers add up as they start),
plus ``spec.overhead``; a request left out but limited counts the limit (the
API defaulting kube-apiserver applies). :func:`non_zero_requests` is the
variant the scores use (100m CPU and 200 MiB memory for containers that
ask for none). Pure; called by :mod:`.podinfo` and :mod:`.nodeinfo`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kubevisor.api.errors import QuantityError
from kubevisor.api.quantity import parse_quantity

JSON = dict[str, Any]

CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"
#: kube-scheduler's defaults for containers without requests (scoring only).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


@lru_cache(maxsize=4096)
def _amount(name: str, value: str) -> int:
    try:
        exact = parse_quantity(value)
    except QuantityError:
        return 0
    if name == CPU:
        exact *= 1000
    return max(0, math.ceil(exact))


def amount(name: str, value: Any) -> int:
    """``value`` of resource ``name`` as an int (millicores for cpu); 0 if unparsable."""
    return _amount(name, str(value))


@dataclass(slots=True)
class Resources:
    """An amount of each resource; mutable so a node's totals update in place."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral: int = 0
    scalars: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_list(cls, resources: Mapping[str, Any] | None) -> Resources:
        out = cls()
        for name, value in (resources or {}).items():
            out.set(name, amount(name, value))
        return out

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL:
            return self.ephemeral
        return self.scalars.get(name, 0)

    def set(self, name: str, value: int) -> None:
        if name == CPU:
            self.milli_cpu = value
        elif name == MEMORY:
            self.memory = value
        elif name == EPHEMERAL:
            self.ephemeral = value
        elif name != PODS:
            self.scalars[name] = value

    def names(self) -> Iterable[str]:
        yield CPU
        yield MEMORY
        yield EPHEMERAL
        yield from self.scalars

    def add(self, other: Resources, sign: int = 1) -> None:
        self.milli_cpu += sign * other.milli_cpu
        self.memory += sign * other.memory
        self.ephemeral += sign * other.ephemeral
        for name, value in other.scalars.items():
            self.scalars[name] = self.scalars.get(name, 0) + sign * value

    def maximum(self, other: Resources) -> None:
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral = max(self.ephemeral, other.ephemeral)
        for name, value in other.scalars.items():
            self.scalars[name] = max(self.scalars.get(name, 0), value)

    def copy(self) -> Resources:
        return Resources(self.milli_cpu, self.memory, self.ephemeral, dict(self.scalars))


def _container_requests(container: Mapping[str, Any]) -> Resources:
    res = container.get("resources") or {}
    requests = dict(res.get("limits") or {})
    requests.update(res.get("requests") or {})
    return Resources.from_list(requests)


def _combine(spec: Mapping[str, Any], per_container: Any) -> Resources:
    total = Resources()
    for c in spec.get("containers") or ():
        total.add(per_container(c))
    inits = spec.get("initContainers")
    if not inits:
        return total
    init_max = Resources()
    sidecars = Resources()
    for c in inits:
        reqs = per_container(c)
        if c.get("restartPolicy") == "Always":
            total.add(reqs)
            sidecars.add(reqs)
            init_max.maximum(sidecars)
        else:
            reqs = reqs.copy()
            reqs.add(sidecars)
            init_max.maximum(reqs)
    total.maximum(init_max)
    return total


def pod_requests(spec: Mapping[str, Any], overhead: Mapping[str, Any] | None = None) -> Resources:
    """What the pod with ``spec`` needs from a node (``overhead``, when given,
    stands in for ``spec.overhead``)."""
    total = _combine(spec, _container_requests)
    extra = spec.get("overhead") if overhead is None else overhead
    if extra:
        total.add(Resources.from_list(extra))
    return total


def _non_zero(container: Mapping[str, Any]) -> Resources:
    reqs = _container_requests(container)
    res = container.get("resources") or {}
    given = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    if CPU not in given:
        reqs.milli_cpu = DEFAULT_MILLI_CPU
    if MEMORY not in given:
        reqs.memory = DEFAULT_MEMORY
    return reqs


def non_zero_requests(spec: Mapping[str, Any],
                      overhead: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """(millicores, bytes) the scores count for the pod: defaults fill the gaps."""
    total = _combine(spec, _non_zero)
    extra = spec.get("overhead") if overhead is None else overhead
    if extra:
        more = Resources.from_list(extra)
        return total.milli_cpu + more.milli_cpu, total.memory + more.memory
    return total.milli_cpu, total.memory
