"""Fixtures for the apiserver tests: the real app over a real SQLite store
in a tmp dir, reached in-process through ``httpx.ASGITransport`` (``api``)
or over real HTTPS from uvicorn (``served``, for watch streams and kubectl).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kubevisor.api.builtin import builtin_registry
from kubevisor.apiserver.app import App, create_app
from kubevisor.apiserver.config import ServerConfig, UserInfo
from kubevisor.store import open_store

TOKEN = "test-token"
ADMIN = UserInfo(name="admin", groups=("system:masters",))


def make_config(data_dir: Path) -> ServerConfig:
    return ServerConfig(store=open_store("sqlite", data_dir=data_dir),
                        registry=builtin_registry(), tokens={TOKEN: ADMIN})


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    config = make_config(tmp_path)
    application = create_app(config)
    assert isinstance(application, App)
    await application.startup()
    yield application
    await application.shutdown()
    await config.store.close()


@pytest.fixture
async def api(app: App) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kv",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[object]:
    """A real HTTPS server (uvicorn) on a free port; yields its ServedURL."""
    from kubevisor.apiserver.server import serve

    config = make_config(tmp_path / "store")
    async with serve(config, data_dir=tmp_path / "srv") as url:
        url.store = config.store  # type: ignore[attr-defined]
        yield url


async def make_ns(api: httpx.AsyncClient, name: str) -> dict:
    r = await api.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": name}})
    assert r.status_code == 201, r.text
    return r.json()
