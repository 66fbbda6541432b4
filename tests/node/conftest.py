"""Fixtures: a real in-process apiserver with the system namespaces (as
``kubevisor up`` creates them) and a Client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.client import AlreadyExistsError, Client
from tests.client.live import Live, live_apiserver, require_apiserver


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    require_apiserver()
    async with live_apiserver(tmp_path / "api") as server:
        async with Client.from_kubeconfig(server.kubeconfig) as client:
            for name in ("default", "kube-system", "kube-node-lease"):
                try:
                    await client.create({"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": name}})
                except AlreadyExistsError:
                    pass
        yield server


@pytest.fixture
async def api(live: Live) -> AsyncIterator[Client]:
    async with Client.from_kubeconfig(live.kubeconfig) as client:
        yield client
