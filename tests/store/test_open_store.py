"""The store URL factory used by ``kubevisor up --store``."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubevisor.store import open_store
from kubevisor.store.errors import StoreError
from kubevisor.store.etcd import EtcdStore
from kubevisor.store.sqlite import SqliteStore


def test_sqlite_default_lives_in_the_data_dir(tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=tmp_path)
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "state.db"


def test_sqlite_path(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/x.db", data_dir=Path("/nonexistent"))
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "x.db"


def test_etcd_endpoints() -> None:
    store = open_store("etcd://127.0.0.1:2379,10.0.0.2:2379", data_dir=Path("."))
    assert isinstance(store, EtcdStore)
    assert store.endpoints == ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]


@pytest.mark.parametrize("url", ["", "mysql://x", "etcd://", "etcd://host-without-port", "sqlite://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(StoreError):
        open_store(url, data_dir=Path("."))


async def test_opened_sqlite_store_works(tmp_path: Path) -> None:
    store = open_store("sqlite", data_dir=tmp_path / "new-dir")
    await store.start()
    try:
        assert (await store.create("/a", b"1")).mod_revision == 1
    finally:
        await store.close()
    assert (tmp_path / "new-dir" / "state.db").exists()
