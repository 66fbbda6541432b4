"""Fixtures: a real in-process apiserver, a Client on it, and the
controller manager running against it (as ``kubevisor up`` runs it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.client import Client
from kubevisor.controllers.manager import run_controllers
from tests.client.live import live_apiserver, require_apiserver


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Client]:
    """A client on a fresh apiserver whose controllers run meanwhile."""
    require_apiserver()
    async with live_apiserver(tmp_path) as live:
        kubeconfig = live.kubeconfig
        stop = asyncio.Event()
        manager = asyncio.create_task(run_controllers(kubeconfig, stop))
        try:
            async with Client.from_kubeconfig(kubeconfig) as client:
                yield client
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(manager, 10)
