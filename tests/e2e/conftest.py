"""Fixtures of the end-to-end suites: one real ``kubevisor up`` per test
module and store, and a fresh namespace per test.

``server`` is module-scoped and parametrised over the two stores
(``sqlite`` and ``etcd`` — a real etcd started by tests/support/etcd.py),
so each kubectl suite runs twice; tests share the server and keep out of
each other's way with the ``ns`` fixture's unique namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import KubevisorServer, server_on_store, unique

STORES = ["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)]


@pytest.fixture(scope="module", params=STORES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubevisorServer]:
    with server_on_store(request.param, tmp_path_factory.mktemp(f"kv-{request.param}")) as srv:
        yield srv


@pytest.fixture
def ns(server: KubevisorServer) -> Iterator[str]:
    """A fresh namespace on the module's server, deleted (not awaited) after."""
    name = unique("e2e")
    server.create_namespace(name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
