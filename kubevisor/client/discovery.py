"""Discovery: which resources the server serves, and at which paths.

Reads the legacy discovery documents (``/api``, ``/api/v1``, ``/apis``,
``/apis/<group>/<version>``) into :class:`APIResource` records, cached and
refreshed on a miss so that kinds added at run time (custom resources)
resolve without restarting. The client calls :meth:`Discovery.resolve` for
every (apiVersion, kind); the namespace controller and the garbage
collector call :meth:`Discovery.resources` to walk everything served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubevisor.client.errors import ClientError, UnknownResourceError

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class APIResource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()
    preferred: bool = True  # the group's preferred version

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``pods``, ``deployments.apps``: how kube names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, *, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base

    def supports(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


def parse_resource_list(doc: JSON, *, group: str, version: str, preferred: bool) -> list[APIResource]:
    """The top-level resources (not subresources) of one APIResourceList."""
    out = []
    for entry in doc.get("resources") or []:
        name = entry.get("name", "")
        if not name or "/" in name:
            continue
        out.append(APIResource(
            group=entry.get("group") or group,
            version=entry.get("version") or version,
            kind=entry.get("kind", ""),
            plural=name,
            namespaced=bool(entry.get("namespaced")),
            verbs=frozenset(entry.get("verbs") or ()),
            preferred=preferred,
        ))
    return out


class Discovery:
    """A cache of the server's resources; ``fetch(path)`` GETs one document."""

    def __init__(self, fetch: Callable[[str], Awaitable[JSON]], *,
                 min_refresh_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._min_interval = min_refresh_interval
        self._clock = clock
        self._by_kind: dict[tuple[str, str], APIResource] = {}
        self._all: list[APIResource] = []
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        #: group/version -> error text, for group versions that failed last refresh.
        self.failed: dict[str, str] = {}

    async def refresh(self) -> None:
        """Re-read every discovery document (concurrently)."""
        started = self._clock()
        async with self._lock:
            if self._loaded_at is not None and self._loaded_at >= started:
                return  # someone refreshed while we waited
            await self._refresh()

    async def _refresh(self) -> None:
        core = await self._fetch("/api")
        groups = await self._fetch("/apis")
        wanted: list[tuple[str, str, str, bool]] = []  # path, group, version, preferred
        for version in core.get("versions") or []:
            wanted.append((f"/api/{version}", "", version, True))
        for g in groups.get("groups") or []:
            preferred = (g.get("preferredVersion") or {}).get("version")
            versions = [v.get("version") for v in g.get("versions") or [] if v.get("version")]
            if preferred is None and versions:
                preferred = versions[0]
            for version in versions:
                wanted.append((f"/apis/{g['name']}/{version}", g["name"], version,
                               version == preferred))

        async def one(path: str, group: str, version: str, preferred: bool) -> list[APIResource]:
            doc = await self._fetch(path)
            return parse_resource_list(doc, group=group, version=version, preferred=preferred)

        results = await asyncio.gather(*(one(*w) for w in wanted), return_exceptions=True)
        all_resources: list[APIResource] = []
        failed: dict[str, str] = {}
        for (_path, group, version, _), result in zip(wanted, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, ClientError):
                    raise result
                failed[f"{group}/{version}" if group else version] = str(result)
                continue
            all_resources.extend(result)
        by_kind: dict[tuple[str, str], APIResource] = {}
        for res in all_resources:
            by_kind.setdefault((res.api_version, res.kind), res)
        self._all, self._by_kind, self.failed = all_resources, by_kind, failed
        self._loaded_at = self._clock()

    async def resolve(self, api_version: str, kind: str) -> APIResource:
        """The resource serving (apiVersion, kind); refreshes once on a miss."""
        res = self._by_kind.get((api_version, kind))
        if res is not None:
            return res
        if self._loaded_at is None or self._clock() - self._loaded_at >= self._min_interval:
            await self.refresh()
            res = self._by_kind.get((api_version, kind))
        if res is None:
            raise UnknownResourceError(api_version, kind)
        return res

    async def resources(self, *, refresh: bool = False, preferred_only: bool = True,
                        verbs: tuple[str, ...] = ()) -> list[APIResource]:
        """Every served resource (one version per group/resource by default)."""
        if refresh or self._loaded_at is None:
            await self.refresh()
        out = []
        for res in self._all:
            if preferred_only and not res.preferred:
                continue
            if verbs and not res.supports(*verbs):
                continue
            out.append(res)
        if preferred_only:
            # A resource missing from the preferred version is still served elsewhere.
            seen = {(r.group, r.plural) for r in out}
            for res in self._all:
                if (res.group, res.plural) not in seen and (not verbs or res.supports(*verbs)):
                    seen.add((res.group, res.plural))
                    out.append(res)
        return out

