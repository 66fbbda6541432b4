"""Fixtures of the end-to-end suites: one real ``kubevisor up`` per test
module and store, and a fresh namespace per test.

``server`` is module-scoped and parametrised over the two stores
(``sqlite`` and ``etcd`` — a real etcd started by tests/support/etcd.py),
so each kubectl suite runs twice; tests share the server and keep out of
each other's way with the ``ns`` fixture's unique namespace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.etcd import running_etcd
from tests.support.server import KubevisorServer, running_server, unique

STORES = ["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)]


@contextlib.contextmanager
def etcd_store_url(tmp: Path) -> Iterator[str]:
    """A single-member etcd on free loopback ports, as a ``--store`` URL."""
    with running_etcd(tmp) as cluster:
        yield cluster.store_url


@contextlib.contextmanager
def server_for(store: str, tmp: Path) -> Iterator[KubevisorServer]:
    if store == "sqlite":
        with running_server(tmp / "data", store="sqlite") as server:
            yield server
    else:
        with etcd_store_url(tmp / "etcd") as url, running_server(tmp / "data", store=url) as server:
            yield server


@pytest.fixture(scope="module", params=STORES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubevisorServer]:
    with server_for(request.param, tmp_path_factory.mktemp(f"kv-{request.param}")) as srv:
        yield srv


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubevisorServer]:
    """For suites that only need one store (python client, fuzzing)."""
    with server_for("sqlite", tmp_path_factory.mktemp("kv-sqlite")) as srv:
        yield srv


@pytest.fixture
def ns(server: KubevisorServer) -> Iterator[str]:
    """A fresh namespace on the module's server, deleted (not awaited) after."""
    name = unique("e2e")
    server.create_namespace(name)
    yield name
    server.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
