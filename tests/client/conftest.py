"""Fixtures: ``api``, a Client connected to a real in-process apiserver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.client import Client
from tests.client.live import live_apiserver, require_apiserver


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Client]:
    require_apiserver()
    async with live_apiserver(tmp_path) as url:
        async with Client.from_kubeconfig(url.kubeconfig) as client:  # type: ignore[attr-defined]
            yield client
