"""Hostile input never gets a 5xx: random paths, methods, content types and
JSON bodies (hypothesis) against the in-process app with a real store."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubevisor.apiserver.app import App
from tests.apiserver.conftest import TOKEN

pytestmark = pytest.mark.slow

def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=20,
)
kinds = st.sampled_from(["Pod", "ConfigMap", "Namespace", "Deployment", "Bogus", ""])
versions = st.sampled_from(["v1", "apps/v1", "x/y", ""])
objects = st.fixed_dictionaries(
    {"apiVersion": versions, "kind": kinds,
     "metadata": st.one_of(json_values, st.fixed_dictionaries(
         {"name": st.one_of(st.text(max_size=10), json_values)},
         optional={"labels": json_values, "namespace": json_values, "finalizers": json_values,
                   "generateName": json_values, "resourceVersion": json_values}))},
    optional={"spec": json_values, "data": json_values, "status": json_values},
)
paths = st.sampled_from([
    "/api/v1/namespaces", "/api/v1/namespaces/fz", "/api/v1/namespaces/fz/configmaps",
    "/api/v1/namespaces/fz/configmaps/a", "/api/v1/namespaces/fz/pods/a",
    "/api/v1/namespaces/fz/pods/a/status", "/apis/apps/v1/namespaces/fz/deployments/a/scale",
    "/apis/apps/v1/namespaces/fz/deployments", "/api/v1/namespaces/fz/finalize",
    "/api/v1/watch/namespaces/fz/pods", "/apis", "/apis/apps", "/openapi/v3/api/v1",
    "/api//v1", "/api/v1/namespaces/fz/configmaps/a/b/c/d", "/apis/x", "/%00", "/api/v9",
]) | st.text(alphabet="/abcv1%.", max_size=30).map(lambda s: "/" + s.lstrip("/"))
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
ctypes = st.sampled_from(["application/json", "application/yaml", "application/merge-patch+json",
                          "application/json-patch+json", "application/strategic-merge-patch+json",
                          "application/apply-patch+yaml", "application/vnd.kubernetes.protobuf",
                          "text/plain", ""])
queries = st.dictionaries(
    st.sampled_from(["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
                     "dryRun", "fieldValidation", "propagationPolicy", "gracePeriodSeconds",
                     "timeoutSeconds", "resourceVersionMatch", "fieldManager", "force"]),
    st.text(alphabet="a=!,()x0-9 .\\", max_size=12), max_size=3)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, path=paths, ctype=ctypes, query=queries,
       body=st.one_of(objects.map(_dumps), json_values.map(_dumps),
                      st.binary(max_size=64)))
async def test_no_5xx(app: App, method: str, path: str, ctype: str, query: dict[str, str],
                      body: bytes) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kv",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        await api.post("/api/v1/namespaces", json={"metadata": {"name": "fz"}})
        if query.get("timeoutSeconds") is not None or "watch" in path:
            query["timeoutSeconds"] = "0.01"
        r = await api.request(method, path, params=query, content=body,
                              headers={"Content-Type": ctype})
        assert r.status_code < 500, (r.status_code, r.text)
