"""The revisioned key -> bytes store and the factory that picks a backend.

The CLI (``kubevisor up --store ...``) and tests call :func:`open_store`
with the user's store URL; the apiserver then uses the returned
:class:`~kubevisor.store.base.Store` (call ``await store.start()`` first).

URLs: ``sqlite`` (``<data_dir>/state.db``), ``sqlite:///abs/path.db`` or
``sqlite://rel/path.db`` (a path relative to the working directory), and
``etcd://HOST:PORT[,HOST:PORT...]`` (``etcds://`` is not supported yet).
"""

from __future__ import annotations

from pathlib import Path

from kubevisor.store.base import Store
from kubevisor.store.errors import StoreError

__all__ = ["Store", "open_store"]


def open_store(url: str, *, data_dir: Path) -> Store:
    """Build (not start) the store named by ``url``; raise StoreError on a bad URL."""
    if url == "sqlite":
        from kubevisor.store.sqlite import SqliteStore

        return SqliteStore(Path(data_dir) / "state.db")
    if url.startswith("sqlite://"):
        from kubevisor.store.sqlite import SqliteStore

        path = url.removeprefix("sqlite://")
        if not path or path == "/":
            raise StoreError(f"store URL {url!r} names no file")
        return SqliteStore(Path(path))
    if url.startswith("etcd://"):
        from kubevisor.store.etcd import EtcdStore

        hosts = [h.strip() for h in url.removeprefix("etcd://").split(",") if h.strip()]
        if not hosts:
            raise StoreError(f"store URL {url!r} names no etcd endpoint")
        endpoints = []
        for host in hosts:
            host = host.rstrip("/")
            if "/" in host or ":" not in host:
                raise StoreError(f"etcd endpoint {host!r} in {url!r} is not HOST:PORT")
            endpoints.append(f"http://{host}")
        return EtcdStore(endpoints)
    raise StoreError(f"unknown store {url!r}: use sqlite, sqlite:///path.db or etcd://HOST:PORT[,...]")
