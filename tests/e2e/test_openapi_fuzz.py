"""Schemathesis against the served OpenAPI v3: for the core ``v1``
ConfigMap, Namespace and Secret operations (and apps/v1 Deployment),
cases generated from the server's own documents — valid and deliberately
invalid (negative) — are sent over HTTPS; no answer may be a 5xx, error
answers are ``kind: Status``, and the server stays ready."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.support.server import KubevisorServer, running_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-openapi-fuzz")]

DOCUMENTS = ["/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1"]
# collections and items (with their subresources) of a few kinds, namespaced and not
PATHS = (
    r"^/api/v1/(namespaces/\{namespace\}/)?(configmaps|secrets)(/\{name\})?$"
    r"|^/apis/apps/v1/(namespaces/\{namespace\}/)?deployments(/\{name\}(/status|/scale)?)?$"
    r"|^/api/v1/namespaces(/\{name\}(/status|/finalize)?)?$"
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubevisorServer]:
    tmp: Path = tmp_path_factory.mktemp("openapi-fuzz")
    with running_server(tmp / "data", store="sqlite") as server:
        for name in ("default", "fuzz"):
            server.kubectl("create", "namespace", name, check=False)
        yield server


@pytest.fixture(scope="module")
def http_session(
    fuzz_server: KubevisorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[requests.Session]:
    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_bytes(fuzz_server.ca_pem)
    session = requests.Session()
    session.verify = str(ca)
    session.headers["Authorization"] = f"Bearer {fuzz_server.token}"
    yield session
    session.close()


def merged_document(server: KubevisorServer) -> dict[str, Any]:
    """One OpenAPI document with the chosen groups' paths and components."""
    merged: dict[str, Any] = {}
    with server.client() as http:
        for path in DOCUMENTS:
            doc = http.get(path).json()
            if not merged:
                merged = doc
                continue
            merged["paths"].update(doc["paths"])
            merged["components"]["schemas"].update(doc["components"]["schemas"])
    return merged


@pytest.fixture(scope="module")
def operations(fuzz_server: KubevisorServer) -> list[Any]:
    schema = schemathesis.openapi.from_dict(merged_document(fuzz_server))
    schema.config.update(base_url=fuzz_server.url)
    selected = schema.include(path_regex=PATHS).exclude(path_regex=r"/watch/")
    found = [result.ok() for result in selected.get_all_operations()]
    assert len(found) >= 25, [op.label for op in found]
    return found


def check(response: requests.Response, case: Any) -> None:
    what = (case.method, case.formatted_path, case.query, response.text[:400])
    assert response.status_code < 500, what
    if response.status_code >= 400 and case.method != "HEAD":
        body = json.loads(response.text)
        assert body.get("kind") == "Status", what
        assert body.get("code") == response.status_code, what


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_served_openapi_operations_never_fail_with_5xx(
    operations: list[Any], http_session: requests.Session, mode: GenerationMode
) -> None:
    strategy = st.one_of([op.as_strategy(generation_mode=mode) for op in operations])

    # No shrinking: a request that hangs would be replayed at 15 s a time
    # until the test's timeout hid it; the first failing case is reported as is.
    @settings(max_examples=250, deadline=None, database=None,
              phases=[Phase.explicit, Phase.reuse, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=strategy)
    def one_call(case: Any) -> None:
        query = dict(case.query or {})
        if str(query.get("watch", "")).lower() not in {"", "0", "false", "f"}:
            query["timeoutSeconds"] = 1  # a watch must end on its own
        case.query = query
        try:
            response = case.call(session=http_session, verify=http_session.verify, timeout=15)
        except requests.Timeout as exc:
            raise AssertionError(f"no answer within 15 s: {case.method} {case.formatted_path} "
                                 f"{case.query} {str(case.body)[:300]}") from exc
        check(response, case)

    one_call()


def test_still_ready(fuzz_server: KubevisorServer) -> None:
    assert fuzz_server.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
