"""Watch streams: newline-delimited ``{"type": ..., "object": ...}`` events.

``resourceVersion`` unset or "0" first sends the current state as ADDED
events, then live changes; N sends changes after N; a compacted N sends one
ERROR event with a 410 Expired Status and ends. Label and field selectors
are applied as kube-apiserver's watch cache does (an object that stops
matching yields DELETED, one that starts matching ADDED). Bookmarks when
asked, ``timeoutSeconds``, ``sendInitialEvents``, and one-row Tables when
the client asked for Table output. Called by the app for ``?watch=true`` and
the legacy ``/watch/`` paths; the app turns the iterator into a chunked
response and closes it when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from kubevisor.api.formats import parse_int64
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors, storage, tables
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, StreamResponse
from kubevisor.apiserver.listing import matcher, partial, selectors_of
from kubevisor.apiserver.routing import RequestInfo
from kubevisor.store import errors as store_errors
from kubevisor.store.base import Event

JSON = dict[str, Any]

log = logging.getLogger(__name__)

BOOKMARK_INTERVAL = 30.0  # seconds between bookmarks on a quiet watch
_INITIAL_END = "k8s.io/initial-events-end"


def _line(kind: str, obj_bytes: bytes) -> bytes:
    return b'{"type":"%s","object":%s}\n' % (kind.encode(), obj_bytes)


def _error_line(exc: errors.ApiError) -> bytes:
    return _line("ERROR", orjson.dumps(exc.status()))


async def serve(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType,
                out: Output) -> StreamResponse:
    label, field = selectors_of(rt, req)
    match = matcher(rt, label, field)
    namespace = info.namespace
    ns_pin = field.value_of("metadata.namespace")
    if rt.namespaced and not namespace and ns_pin:
        namespace = ns_pin
    rv = req.query.get("resourceVersion", "")
    if rv not in ("", "0"):
        try:
            parse_int64(rv)
        except ValueError as exc:
            raise errors.bad_request(f'invalid resource version "{rv}"') from exc
    timeout = 0.0
    if req.query.get("timeoutSeconds"):
        try:
            timeout = float(req.query["timeoutSeconds"])
        except ValueError as exc:
            raise errors.bad_request("invalid timeoutSeconds") from exc
    send_initial = req.query.get("sendInitialEvents", "").lower() == "true"
    if send_initial and req.query.get("resourceVersionMatch") != "NotOlderThan":
        raise errors.invalid("ListOptions", "", [errors.field_cause(
            "resourceVersionMatch", "FieldValueForbidden",
            "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])
    chunks = _stream(
        ctx, req, rt, out, prefix=storage.prefix(rt, namespace), match=match, rv=rv,
        timeout=timeout, bookmarks=req.flag("allowWatchBookmarks"), send_initial=send_initial,
    )
    return StreamResponse(200, chunks)


class _Encoder:
    """Turns store values into event lines in the requested output form."""

    def __init__(self, rt: ResourceType, req: Request, out: Output) -> None:
        self.rt, self.req, self.out = rt, req, out
        self.first = True

    def line(self, kind: str, obj: JSON | None, raw: bytes | None) -> bytes:
        if self.out.table:
            if obj is None:
                assert raw is not None
                obj = orjson.loads(raw)
            storage.fix_version(obj, self.rt)
            tbl = tables.table(self.rt, [obj], self.req, self.out, list_meta={
                "resourceVersion": obj["metadata"].get("resourceVersion", "")},
                headers=self.first)
            self.first = False
            return _line(kind, orjson.dumps(tbl))
        if self.out.partial:
            if obj is None:
                assert raw is not None
                obj = orjson.loads(raw)
            return _line(kind, orjson.dumps(partial(obj)))
        if raw is None:
            assert obj is not None
            return _line(kind, orjson.dumps(storage.fix_version(obj, self.rt)))
        return _line(kind, storage.served_as(raw, self.rt))

    def bookmark(self, revision: int, *, initial_end: bool = False) -> bytes:
        meta: JSON = {"resourceVersion": str(revision)}
        if initial_end:
            meta["annotations"] = {_INITIAL_END: "true"}
        return _line("BOOKMARK", orjson.dumps({
            "kind": self.rt.kind, "apiVersion": self.rt.group_version, "metadata": meta}))


def _event_lines(ev: Event, enc: _Encoder, match: Any) -> list[bytes]:
    if match is None:
        if ev.type == "DELETE":
            return [enc.line("DELETED", None, storage.raw(ev.kv, revision=ev.kv.mod_revision))]
        kind = "ADDED" if ev.prev is None or ev.kv.create_revision == ev.kv.mod_revision \
            else "MODIFIED"
        return [enc.line(kind, None, storage.raw(ev.kv))]
    if ev.type == "DELETE":
        obj = storage.decode(ev.kv, revision=ev.kv.mod_revision)
        return [enc.line("DELETED", obj, None)] if match(obj) else []
    cur = storage.decode(ev.kv)
    now = match(cur)
    if ev.prev is None or ev.kv.create_revision == ev.kv.mod_revision:
        return [enc.line("ADDED", cur, None)] if now else []
    before = match(storage.decode(ev.prev))
    if now and before:
        return [enc.line("MODIFIED", cur, None)]
    if now:
        return [enc.line("ADDED", cur, None)]
    if before:
        return [enc.line("DELETED", cur, None)]
    return []


async def _stream(
    ctx: Context, req: Request, rt: ResourceType, out: Output, *, prefix: str, match: Any,
    rv: str, timeout: float, bookmarks: bool, send_initial: bool,
) -> AsyncIterator[bytes]:
    enc = _Encoder(rt, req, out)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    initial = rv in ("", "0") or send_initial
    start = 0
    if initial:
        try:
            res = await ctx.store.range(prefix)
        except store_errors.StoreError as exc:
            yield _error_line(errors.internal(str(exc)))
            return
        start = res.revision
        batch: list[bytes] = []
        for kv in res.kvs:
            if match is None:
                batch.append(enc.line("ADDED", None, storage.raw(kv)))
            else:
                obj = storage.decode(kv)
                if match(obj):
                    batch.append(enc.line("ADDED", obj, None))
            if len(batch) >= 256:
                yield b"".join(batch)
                batch = []
        if batch:
            yield b"".join(batch)
        if send_initial and bookmarks:
            yield enc.bookmark(start, initial_end=True)
    else:
        start = int(rv)
    last = start
    watcher = ctx.store.watch(prefix, after_revision=start)
    # Bounded: a client that stops reading stops this pump, then the store's
    # own per-watcher buffer fills and the store ends the watch (an ERROR
    # event when the client reads again) instead of memory growing here.
    queue: asyncio.Queue[list[Event] | BaseException] = asyncio.Queue(maxsize=64)

    async def pump() -> None:
        try:
            async for events in watcher:
                await queue.put(events)
            await queue.put(EOFError())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which decides
            await queue.put(exc)

    pump_task = asyncio.create_task(pump())
    try:
        while True:
            wait = BOOKMARK_INTERVAL if bookmarks else None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait = left if wait is None else min(wait, left)
            try:
                item = await asyncio.wait_for(queue.get(), wait) if wait is not None \
                    else await queue.get()
            except TimeoutError:
                if bookmarks and (deadline is None or deadline - time.monotonic() > 0):
                    yield enc.bookmark(last)
                continue
            if isinstance(item, EOFError):
                return
            if isinstance(item, store_errors.CompactedError):
                yield _error_line(errors.expired(
                    f"too old resource version: {start} ({item.compacted})"))
                return
            if isinstance(item, store_errors.StoreError):
                # A slow watcher the store dropped: the client re-lists, as after a 410.
                yield _error_line(errors.expired(f"watch ended: {item}"))
                return
            if isinstance(item, BaseException):
                if isinstance(item, asyncio.CancelledError):
                    return
                log.error("watch on %s failed", prefix, exc_info=item)
                yield _error_line(errors.internal(str(item)))
                return
            lines: list[bytes] = []
            for ev in item:
                lines.extend(_event_lines(ev, enc, match))
                last = ev.revision
            if lines:
                yield b"".join(lines)
    finally:
        pump_task.cancel()
        with contextlib.suppress(BaseException):
            await pump_task
        await watcher.close()
