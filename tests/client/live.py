"""A real apiserver in this process, for the client and controller suites.

:func:`live_apiserver` starts ``create_app`` over TLS (the same
:func:`kubevisor.apiserver.server.serve` that ``kubevisor up`` uses) on a
free loopback port with a SQLite store in a tmp dir, and yields a
:class:`Live` (URL, kubeconfig path, and the store, for tests that need to
compact it). Imported by the conftest files of tests/client and
tests/controllers.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Live:
    url: str
    kubeconfig: Path
    store: Any


def require_apiserver() -> None:
    if importlib.util.find_spec("kubevisor.apiserver.app") is None:
        pytest.skip("the apiserver app is not in this tree yet")


@contextlib.asynccontextmanager
async def live_apiserver(data_dir: Path) -> AsyncIterator[Live]:
    from kubevisor.api.builtin import builtin_registry
    from kubevisor.apiserver.config import ServerConfig
    from kubevisor.apiserver.server import serve
    from kubevisor.store import open_store

    store = open_store("sqlite", data_dir=data_dir)
    await store.start()
    config = ServerConfig(store=store, registry=builtin_registry())
    async with serve(config, data_dir=data_dir) as url:
        yield Live(url=str(url), kubeconfig=url.kubeconfig, store=store)
