"""Micro-benchmarks of the apiserver's per-request hot paths.

Prints one JSON object: microseconds per call (best of several batches, so
other processes sharing the cores skew it less) for the work every create
does besides the store write: schema loading at start-up, Pod defaulting,
validation, unknown-field detection and managedFields computation.

Run: ``.venv/bin/python bench/hotpaths.py``. Figures and targets are kept in
docs/performance.md; they are measured here, never asserted in unit tests.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable

from kubevisor.api import schemas
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.validation import unknown_fields_of, validate
from kubevisor.apiserver.patch import update_managed_fields

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "containers": [
            {"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
        ]
    },
}


def best_us(fn: Callable[[], object], *, batch: int = 200, batches: int = 15) -> float:
    fn()
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - start) / batch)
    return round(best * 1e6, 1)


def schema_load_seconds() -> float:
    code = (
        "import time; t=time.perf_counter(); from kubevisor.api import schemas; "
        "schemas.component_schemas(); print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip()), 3)


def main() -> None:
    rt = builtin_registry().by_kind("", "v1", "Pod")
    assert rt is not None and rt.defaulter is not None
    pod = copy.deepcopy(POD)
    rt.defaulter(pod)
    schema = schemas.schema_of(rt)
    defs = schemas.component_schemas()
    now = "2026-01-01T00:00:00Z"

    def default() -> None:
        rt.defaulter(copy.deepcopy(POD))  # type: ignore[misc]

    report = {
        "schema_load_s": schema_load_seconds(),
        "pod_deepcopy_us": best_us(lambda: copy.deepcopy(POD)),
        "pod_default_us_incl_copy": best_us(default),
        "pod_validate_us": best_us(lambda: validate(rt, pod)),
        "pod_unknown_fields_us": best_us(lambda: unknown_fields_of(rt, pod)),
        "pod_managed_fields_create_us": best_us(
            lambda: update_managed_fields(
                None, pod, manager="kubectl-create", api_version="v1", now=now,
                schema=schema, defs=defs,
            )
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
