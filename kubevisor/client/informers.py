"""One informer per watched thing, shared by every controller of a process.

:class:`SharedInformers` is kube-controller-manager's SharedInformerFactory:
controllers ask it for the :class:`~kubevisor.client.informer.Informer` of
an (apiVersion, kind) — with an optional namespace, selectors and
``transform`` — in their constructors, add their handlers, and read its
cache; the one who owns the factory (the controller manager, or a
controller built without one) runs it. So one process opens one watch per
kind and parses each event once, whatever number of controllers look at
it. A controller that wants a subset of a kind (pods with some label)
takes the whole informer and filters in its handler (:func:`filtered`)
rather than opening a second watch.

An informer with a ``transform`` (the garbage collector's metadata-only
ones) asked for when the whole-object informer of the same watch exists is
a :class:`~kubevisor.client.informer.DerivedInformer` fed by that one: no
second watch. Informers asked for after :meth:`SharedInformers.start`
start at once (the garbage collector asks as discovery finds resources);
:meth:`release` stops one when its last user lets go of it. Cached objects are shared
between controllers: never mutate them, copy first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from kubevisor.client.client import Client
from kubevisor.client.informer import DerivedInformer, Handler, Informer

JSON = dict[str, Any]
Transform = Callable[[JSON], JSON]
_Key = tuple[str, str, str | None, str | None, str | None, Transform | None]


class SharedInformers:
    """The informers of one client, one per distinct set of parameters.

    ``informers.get(...)`` in constructors, then ``await informers.run()``
    in a task (cancel it to stop every informer), or ``start()`` and
    ``await shutdown()``.
    """

    def __init__(self, client: Client, *,
                 retry_delays: tuple[float, float] = (0.1, 10.0)) -> None:
        self.client = client
        self._retry = retry_delays
        self._informers: dict[_Key, Informer] = {}
        self._users: dict[_Key, int] = {}
        self._tasks: dict[_Key, asyncio.Task[None]] = {}
        self._started = False
        self._failed: asyncio.Future[None] | None = None

    def get(self, api_version: str, kind: str, *, namespace: str | None = None,
            label_selector: str | None = None, field_selector: str | None = None,
            transform: Transform | None = None) -> Informer:
        """The shared informer for these parameters (``transform`` compares by
        identity: pass the same function, e.g. :func:`metadata_only`, to share)."""
        key: _Key = (api_version, kind, namespace, label_selector, field_selector, transform)
        self._users[key] = self._users.get(key, 0) + 1
        informer = self._informers.get(key)
        if informer is None:
            whole: _Key = (api_version, kind, namespace, label_selector, field_selector, None)
            if transform is not None and whole in self._informers:
                self._users[whole] += 1  # the derived one uses it as long as it lives
                informer = DerivedInformer(self._informers[whole], transform)
            else:
                informer = Informer(self.client, api_version, kind, namespace=namespace,
                                    label_selector=label_selector,
                                    field_selector=field_selector, transform=transform,
                                    retry_delays=self._retry)
            self._informers[key] = informer
            if self._started:
                self._start_one(key, informer)
        return informer

    def created(self) -> list[Informer]:
        """Every informer created (and not released), for logs and tests."""
        return list(self._informers.values())

    def release(self, informer: Informer) -> None:
        """One user is done with ``informer``; the last one stops it (its
        handlers should be removed first)."""
        key = next((k for k, known in self._informers.items() if known is informer), None)
        if key is None:
            return
        self._users[key] -= 1
        if self._users[key] > 0:
            return
        del self._users[key], self._informers[key]
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        if isinstance(informer, DerivedInformer):
            informer.detach()
            self.release(informer.source)

    def start(self) -> None:
        """Run every informer created and not yet running (idempotent);
        those created later start as they are created. Needs a running loop."""
        self._started = True
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        for key, informer in self._informers.items():
            if key not in self._tasks:
                self._start_one(key, informer)

    def _start_one(self, key: _Key, informer: Informer) -> None:
        name = f"informer-{informer.kind}" + (f"-{informer.namespace}" if informer.namespace
                                              else "")
        task = asyncio.create_task(informer.run(), name=name)
        self._tasks[key] = task
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._failed is None or self._failed.done():
            return
        exc = task.exception()
        self._failed.set_exception(exc or RuntimeError(f"{task.get_name()} stopped"))

    async def run(self) -> None:
        """Start, and run until cancelled; then stop every informer. Raises if
        an informer's task ends by itself (they retry every failure, so
        that is a bug)."""
        self.start()
        assert self._failed is not None
        try:
            await asyncio.shield(self._failed)
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop every informer and wait for them."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._started = False
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._failed is not None and not self._failed.done():
            self._failed.cancel()
        self._failed = None

    async def wait_synced(self, *informers: Informer) -> None:
        """Until each of ``informers`` (default: every one created) has
        delivered its first full list."""
        waiting = informers or tuple(self._informers.values())
        for informer in waiting:
            await informer.synced.wait()


def filtered(predicate: Callable[[JSON], bool], handler: Handler) -> Handler:
    """``handler`` seeing only the objects ``predicate`` accepts, as a watch
    with that selector would (kube's FilteringResourceEventHandler): an
    update into the subset is an ADDED, out of it a DELETED of the old object."""
    def on_event(etype: str, obj: JSON, old: JSON | None) -> None:
        now = predicate(obj)
        if etype == "ADDED":
            if now:
                handler(etype, obj, old)
            return
        before = old is not None and predicate(old)
        if etype == "DELETED":
            if now or before:
                handler(etype, obj, old)
        elif now and before:
            handler(etype, obj, old)
        elif now:
            handler("ADDED", obj, None)
        elif before:
            assert old is not None
            handler("DELETED", old, old)
    return on_event


def has_label(name: str) -> Callable[[JSON], bool]:
    """A predicate: the object carries label ``name`` (any value), as the
    selector ``name`` picks it."""
    def check(obj: JSON) -> bool:
        return name in ((obj.get("metadata") or {}).get("labels") or {})
    return check


__all__ = ["SharedInformers", "filtered", "has_label"]
