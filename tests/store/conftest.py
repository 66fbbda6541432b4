"""Fixtures of the store suites: ``store`` is a started store of each
backend under test (``sqlite`` in a tmp dir, ``etcd`` on one real member,
``etcd3`` on a real three-member cluster), ``ns`` a key prefix unique to
the test (the etcd members are shared by the tests of one worker)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.store.base import Store
from kubevisor.store.etcd import EtcdStore
from kubevisor.store.sqlite import SqliteStore
from tests.support.etcd import EtcdCluster, etcd_cluster, etcd_single

__all__ = ["etcd_cluster", "etcd_single"]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("etcd", id="etcd", marks=pytest.mark.etcd),
    pytest.param("etcd3", id="etcd3", marks=pytest.mark.etcd),
]


def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if backend == "sqlite":
        return SqliteStore(tmp_path / "state.db")
    fixture = "etcd_single" if backend == "etcd" else "etcd_cluster"
    cluster: EtcdCluster = request.getfixturevalue(fixture)
    return EtcdStore(list(cluster))


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend = make_store(request.param, request, tmp_path)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def ns() -> str:
    return f"/t-{uuid.uuid4().hex[:10]}/"
