"""The state every handler shares: the store, the registry of served kinds,
and caches derived from the registry (discovery documents, OpenAPI).

Created once by ``app.create_app``; handlers receive it as their first
argument. When the registry changes (a CRD is created, updated or deleted)
:meth:`Context.registry_changed` drops every derived cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kubevisor.api.kinds import Registry, ResourceType
from kubevisor.apiserver.config import ServerConfig
from kubevisor.store.base import Store


@dataclass(slots=True)
class Context:
    config: ServerConfig
    store: Store
    registry: Registry
    generation: int = 0
    caches: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    ready: bool = False
    # namespace name -> terminating (see apiserver.namespaces)
    namespaces: dict[str, bool] = field(default_factory=dict)
    # cluster IP and node port allocators (see apiserver.services)
    services: Any = None

    def registry_changed(self) -> None:
        self.generation += 1
        self.caches.clear()

    def cached(self, key: str, build: Any) -> Any:
        hit = self.caches.get(key)
        if hit is None:
            hit = build()
            self.caches[key] = hit
        return hit

    def resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.registry.by_resource(group, version, plural)
