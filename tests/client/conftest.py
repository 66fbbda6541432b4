"""Fixtures: ``live``, a real in-process apiserver, and ``api``, a Client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.client import Client
from tests.client.live import Live, live_apiserver, require_apiserver


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    require_apiserver()
    async with live_apiserver(tmp_path) as server:
        yield server


@pytest.fixture
async def api(live: Live) -> AsyncIterator[Client]:
    async with Client.from_kubeconfig(live.kubeconfig) as client:
        yield client
