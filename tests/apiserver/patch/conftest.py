"""Fixtures for the patch tests (schemas from tests/apiserver/patch/k8s_schemas.py)."""

from __future__ import annotations

import pytest

from tests.apiserver.patch.k8s_schemas import K8sSchemas, schemas


@pytest.fixture(scope="session")
def k8s() -> K8sSchemas:
    return schemas()
