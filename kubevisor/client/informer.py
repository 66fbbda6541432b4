"""A shared-informer-like cache: list+watch one kind into memory.

An :class:`Informer` keeps the current objects of one (apiVersion, kind)
(optionally one namespace, a selector, and a ``transform`` that keeps only
what the caller needs, e.g. metadata) up to date from
:meth:`Client.watch`, survives dropped watches and restarts (re-listing
and emitting DELETED for what vanished meanwhile), and calls its handlers
with ``(event_type, object, old_object)`` for every change. Controllers
register handlers that enqueue keys and read the cache in their
reconcilers; :class:`~kubevisor.client.informers.SharedInformers` gives
every controller of a process the same informer for the same watch.
Objects in the cache are shared: never mutate them; copy first
(``copy.deepcopy``) or build new ones. With ``KUBEVISOR_CACHE_MUTATION_DETECTOR=1``
in the environment (kube's KUBE_CACHE_MUTATION_DETECTOR) every informer keeps
a private copy of each cached object and logs an error, and records it in
:data:`MUTATIONS`, when one was changed in place (slow: for tests).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from kubevisor.client.client import INITIAL_EVENTS_END, Client, object_key
from kubevisor.client.errors import ClientError

JSON = dict[str, Any]
Handler = Callable[[str, JSON, JSON | None], None]

log = logging.getLogger(__name__)

MUTATION_DETECTOR_ENV = "KUBEVISOR_CACHE_MUTATION_DETECTOR"
#: What the mutation detector found: "Informer(v1, Pod) ns/name", one per finding.
MUTATIONS: list[str] = []


def metadata_only(obj: JSON) -> JSON:
    """A transform keeping apiVersion, kind and metadata (what the GC needs)."""
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": obj.get("metadata") or {}}


class Informer:
    """The cache of one kind; ``await informer.run()`` in a task, cancel to stop."""

    def __init__(self, client: Client, api_version: str, kind: str, *,
                 namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None,
                 transform: Callable[[JSON], JSON] | None = None,
                 retry_delays: tuple[float, float] = (0.1, 10.0)) -> None:
        self.client = client
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self._selectors = {"label_selector": label_selector, "field_selector": field_selector}
        self._transform = transform
        self._retry = retry_delays
        self._store: dict[tuple[str, str], JSON] = {}
        self._handlers: tuple[Handler, ...] = ()
        self._pristine: dict[tuple[str, str], JSON] | None = (
            {} if os.environ.get(MUTATION_DETECTOR_ENV) == "1" else None)
        #: Set once the first full list has been delivered (and stays set).
        self.synced = asyncio.Event()

    def __repr__(self) -> str:
        return f"Informer({self.api_version}, {self.kind})"

    def add_handler(self, handler: Handler) -> None:
        """``handler(type, obj, old)``: type is ADDED, MODIFIED or DELETED;
        ``old`` is the previous cached object (None when unknown). A handler
        added to a running informer first gets ADDED for each cached object
        (informers are shared: a late user must not miss what came before)."""
        self._handlers = (*self._handlers, handler)
        for obj in list(self._store.values()):
            try:
                handler("ADDED", obj, None)
            except Exception:
                log.exception("%r: handler failed on ADDED %s", self, object_key(obj))

    def remove_handler(self, handler: Handler) -> None:
        """Stop calling ``handler`` (a no-op if it is not registered)."""
        self._handlers = tuple(h for h in self._handlers if h != handler)

    def get(self, name: str, namespace: str = "") -> JSON | None:
        return self._store.get((namespace, name))

    def items(self) -> list[JSON]:
        return list(self._store.values())

    def keys(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._store))

    def __len__(self) -> int:
        return len(self._store)

    def _emit(self, etype: str, obj: JSON, old: JSON | None) -> None:
        for handler in self._handlers:
            try:
                handler(etype, obj, old)
            except Exception:
                log.exception("%r: handler failed on %s %s", self, etype, object_key(obj))

    def _apply(self, etype: str, obj: JSON) -> tuple[str, str]:
        if self._transform is not None:
            obj = self._transform(obj)
        key = object_key(obj)
        if self._pristine is not None:
            self._check(key)
        if etype == "DELETED":
            self._emit("DELETED", obj, self._store.pop(key, None))
        else:
            old = self._store.get(key)
            self._store[key] = obj
            if self._pristine is not None:
                self._pristine[key] = copy.deepcopy(obj)
            self._emit("MODIFIED" if old is not None else "ADDED", obj, old)
        return key

    def _check(self, key: tuple[str, str]) -> None:
        assert self._pristine is not None
        kept, cached = self._pristine.pop(key, None), self._store.get(key)
        if kept is not None and cached is not None and kept != cached:
            finding = f"{self!r} {key[0]}/{key[1]}"
            MUTATIONS.append(finding)
            log.error("cache mutation detected: %s was changed in place: was %r, is %r",
                      finding, kept, cached)

    def check_mutations(self) -> None:
        """With the mutation detector on, look at every cached object now."""
        if self._pristine is not None:
            for key in list(self._pristine):
                self._check(key)
                if key in self._store:
                    self._pristine[key] = copy.deepcopy(self._store[key])

    async def run(self) -> None:
        """List and watch forever; errors back off and restart from a fresh list."""
        try:
            await self._run()
        finally:
            self.check_mutations()

    async def _run(self) -> None:
        failures = 0
        while True:
            seen: set[tuple[str, str]] | None = set()
            try:
                async for etype, obj in self.client.watch(
                        self.api_version, self.kind, namespace=self.namespace,
                        **self._selectors):
                    failures = 0
                    if etype == "BOOKMARK":
                        annotations = (obj.get("metadata") or {}).get("annotations") or {}
                        if annotations.get(INITIAL_EVENTS_END) == "true":
                            if seen is not None:
                                for key in [k for k in self._store if k not in seen]:
                                    if self._pristine is not None:
                                        self._check(key)
                                    self._emit("DELETED", self._store[key], self._store[key])
                                    del self._store[key]
                                seen = None
                            self.synced.set()
                        continue
                    key = self._apply(etype, obj)
                    if seen is not None:
                        seen.add(key)
            except ClientError as exc:
                failures += 1
                delay = min(self._retry[0] * 2 ** (failures - 1), self._retry[1])
                log.warning("%r: watch failed (%s); retrying in %.1fs", self, exc, delay)
                await asyncio.sleep(delay)
            except Exception:  # a malformed object or event: never let the cache die
                failures += 1
                delay = min(self._retry[0] * 2 ** (failures - 1), self._retry[1])
                log.exception("%r: unexpected failure; retrying in %.1fs", self, delay)
                await asyncio.sleep(delay)


class DerivedInformer(Informer):
    """An informer fed by another's events through ``transform`` instead of
    a watch of its own: the same view as a second watch with that
    transform, without the server sending, nor this process parsing, every
    event twice (:class:`~kubevisor.client.informers.SharedInformers` makes
    one when a whole-object informer of the kind already exists). Synced
    once its source is; :meth:`detach` stops the feed."""

    def __init__(self, source: Informer, transform: Callable[[JSON], JSON]) -> None:
        super().__init__(source.client, source.api_version, source.kind,
                         namespace=source.namespace, transform=transform)
        self.source = source
        source.add_handler(self._on_source)  # replays what the source holds

    def __repr__(self) -> str:
        return f"DerivedInformer({self.api_version}, {self.kind})"

    def _on_source(self, etype: str, obj: JSON, old: JSON | None) -> None:
        self._apply(etype, obj)

    def detach(self) -> None:
        self.source.remove_handler(self._on_source)

    async def _run(self) -> None:
        await self.source.synced.wait()
        self.synced.set()
        await asyncio.get_running_loop().create_future()  # until cancelled
