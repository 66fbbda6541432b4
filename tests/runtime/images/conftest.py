"""Fixtures of the image store suites.

``registry`` / ``auth_registry`` (htpasswd) / ``token_registry`` (Bearer
tokens): real ``docker-registry`` processes on loopback (session scope, from ``tests/support/registry.py``); ``store``: a
fresh :class:`LocalImageStore` in the test's tmp dir; ``busybox_image`` and
``httpd_image``: OCI layouts built with umoci (``tests/support/images.py``,
cached under ``.cache/test-images``); ``repo``: a repository name unique to
the test, so tests can share one registry.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubevisor.runtime.images import LocalImageStore
from tests.support.images import BuiltImage, Recipe, build, busybox_recipe, httpd_recipe
from tests.support.registry import auth_registry, registry, token_registry

__all__ = ["auth_registry", "registry", "token_registry"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (owners, device nodes, mounts)")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalImageStore]:
    s = LocalImageStore(tmp_path / "images")
    yield s
    await s.aclose()


def _build_as_root(recipe: Recipe) -> BuiltImage:
    if os.geteuid() != 0:
        pytest.skip("building test images with umoci needs root (it keeps file owners)")
    return build(recipe)


@pytest.fixture(scope="session")
def busybox_image() -> BuiltImage:
    return _build_as_root(busybox_recipe())


@pytest.fixture(scope="session")
def httpd_image() -> BuiltImage:
    return _build_as_root(httpd_recipe())


@pytest.fixture
def repo() -> str:
    return f"t{uuid.uuid4().hex[:10]}/img"
