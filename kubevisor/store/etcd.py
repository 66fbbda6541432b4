"""The etcd backend of the store: a real etcd v3 cluster as the key space.

``open_store("etcd://HOST:PORT,...", ...)`` builds an :class:`EtcdStore`;
the apiserver calls it through the :class:`~kubevisor.store.base.Store`
contract. It speaks etcd's v3 JSON gateway (``/v3/kv/range``,
``/v3/kv/txn``, ``/v3/kv/compaction``, streaming ``/v3/watch``; keys and
values base64) with ``httpx``, so no gRPC stack is needed.

Writes are transactions that compare the key's ``mod_revision`` (or
``create_revision == 0`` for a create) and report which check failed.
etcd's revision is the store revision (a fresh etcd starts at 1).

Endpoints: requests go to one endpoint at a time; a refused connection or
an answer saying the request was not applied ("no leader") moves to the
next, for a few passes over the list with a short pause between passes (a
leader election takes about a second). Reads also retry on a broken
connection or a timeout; a write whose request may have reached etcd is not
retried and raises :class:`~kubevisor.store.errors.UnavailableError`
("may not have happened").
A watch stream that breaks reconnects to the next endpoint from the last
revision it delivered, so its consumer sees no gap.

etcd does not report its compacted revision directly: this store remembers
the highest it has seen and otherwise finds it by reading at revisions
(one request when nothing changed, a binary search after a compaction).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from kubevisor.store.base import Event, KeyValue, RangeResult, prefix_end
from kubevisor.store.errors import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    StoreError,
    UnavailableError,
)

_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
# Errors after which etcd did not apply the request: safe to retry elsewhere.
_NOT_APPLIED = ("no leader", "not capable", "too many requests")
# Errors after which a write may or may not have been applied: reads retry,
# writes report UnavailableError ("may not have happened").
_MAYBE_APPLIED = ("leader changed", "server stopped", "request timed out")
# Passes over the endpoint list before giving up (rides out a leader election).
_PASSES = 4
# Watch responses buffered per watcher before the stream reader waits.
_WATCH_QUEUE = 64
_JSON = {"content-type": "application/json"}


def _b64(data: str | bytes) -> str:
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(raw.get("key")).decode("utf-8", "surrogateescape"),
        value=_unb64(raw.get("value")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
    )


def _range_bounds(prefix: str) -> dict[str, str]:
    """``key``/``range_end`` of every key starting with ``prefix``."""
    end = prefix_end(prefix)
    if not prefix:
        return {"key": _b64(b"\x00"), "range_end": _b64(b"\x00")}  # every key
    return {"key": _b64(prefix), "range_end": _b64(end if end is not None else b"\x00")}


def _exists(key_b64: str) -> dict[str, Any]:
    """A txn compare that holds when the key is live (an absent key's
    mod_revision compares as 0, so a CAS on 0 alone would match it)."""
    return {"key": key_b64, "target": "CREATE", "result": "GREATER", "create_revision": 0}


class _EtcdError(Exception):
    """An error answer from etcd (HTTP status != 200)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EtcdStore:
    """A :class:`~kubevisor.store.base.Store` over etcd's v3 JSON gateway.

    ``endpoints`` are base URLs (``http://HOST:PORT``) of the members.
    """

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 10.0) -> None:
        assert endpoints, "EtcdStore needs at least one endpoint"
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._timeout = timeout
        self._current = 0
        self._client: httpx.AsyncClient | None = None
        # Each watch holds one streaming connection: keep them out of the
        # request pool so many watchers never starve gets and writes.
        self._watch_client: httpx.AsyncClient | None = None
        self._known_compacted = 0
        self._watchers: set[EtcdWatcher] = set()
        self._closed = False

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._watch_client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout, read=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )
        await self.current_revision()  # fail early when no member answers

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watcher in list(self._watchers):
            await watcher.close()
        for client in (self._client, self._watch_client):
            if client is not None:
                await client.aclose()

    # -- transport -------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise UnavailableError("store is closed")
        if self._client is None:
            raise StoreError("store not started")
        return self._client

    def _rotate(self, failed: int) -> None:
        if self._current == failed:
            self._current = (failed + 1) % len(self.endpoints)

    async def _post(self, path: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """POST to the current endpoint, failing over; return the JSON answer.
        Raises _EtcdError for etcd's own error answers."""
        client = self._http()
        content = orjson.dumps(body)
        last: BaseException | None = None
        for attempt in range(_PASSES * len(self.endpoints)):
            if attempt and attempt % len(self.endpoints) == 0:
                await asyncio.sleep(0.2 * attempt / len(self.endpoints))  # every endpoint failed once
            index = self._current
            url = self.endpoints[index] + path
            try:
                response = await client.post(url, content=content, headers=_JSON)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = exc
                self._rotate(index)
                continue
            except httpx.TransportError as exc:
                if not idempotent:
                    raise UnavailableError(f"etcd {url}: {exc!r}; the write may not have happened") from exc
                last = exc
                self._rotate(index)
                continue
            if response.status_code == 200:
                answer: dict[str, Any] = orjson.loads(response.content)
                return answer
            try:
                error = orjson.loads(response.content)
                message, code = str(error.get("message") or error.get("error")), int(error.get("code", 0))
            except (orjson.JSONDecodeError, AttributeError, ValueError):
                message, code = response.text.strip() or f"HTTP {response.status_code}", 0
            retry = any(m in message for m in _NOT_APPLIED) or (
                idempotent and any(m in message for m in _MAYBE_APPLIED)
            )
            if retry:
                last = _EtcdError(message, code)
                self._rotate(index)
                continue
            if code in (4, 14) or response.status_code >= 500 or any(m in message for m in _MAYBE_APPLIED):
                raise UnavailableError(f"etcd {url}: {message}; a write may not have happened")
            raise _EtcdError(message, code)
        raise UnavailableError(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}") from last

    async def _read(self, path: str, body: dict[str, Any], revision: int) -> dict[str, Any]:
        """A read at ``revision`` with etcd's revision errors translated."""
        try:
            return await self._post(path, body, idempotent=True)
        except _EtcdError as exc:
            raise await self._translate(exc, revision) from exc

    async def _translate(self, exc: _EtcdError, revision: int) -> StoreError:
        if _COMPACTED in exc.message:
            return CompactedError(revision, await self.compacted_revision())
        if _FUTURE in exc.message:
            return FutureRevisionError(revision, await self.current_revision())
        return StoreError(f"etcd: {exc.message}")

    # -- reads -----------------------------------------------------------

    async def current_revision(self) -> int:
        answer = await self._read("/v3/kv/range", {"key": _b64(b"\x00"), "count_only": True}, 0)
        return int(answer["header"]["revision"])

    async def _readable_at(self, revision: int) -> bool:
        body = {"key": _b64(b"\x00"), "count_only": True, "revision": revision}
        try:
            await self._post("/v3/kv/range", body, idempotent=True)
        except _EtcdError as exc:
            if _COMPACTED in exc.message:
                return False
            raise StoreError(f"etcd: {exc.message}") from exc
        return True

    async def compacted_revision(self) -> int:
        low = max(self._known_compacted, 1)
        if await self._readable_at(low):
            return self._known_compacted
        high = await self.current_revision()  # always readable
        while low + 1 < high:  # invariant: low is compacted away, high is readable
            middle = (low + high) // 2
            if await self._readable_at(middle):
                high = middle
            else:
                low = middle
        self._known_compacted = max(self._known_compacted, high)
        return high

    async def get(self, key: str, *, revision: int = 0) -> KeyValue | None:
        body: dict[str, Any] = {"key": _b64(key)}
        if revision:
            body["revision"] = revision
        answer = await self._read("/v3/kv/range", body, revision)
        kvs = answer.get("kvs")
        return _kv(kvs[0]) if kvs else None

    async def range(
        self,
        prefix: str,
        *,
        revision: int = 0,
        start_key: str | None = None,
        limit: int = 0,
    ) -> RangeResult:
        bounds = _range_bounds(prefix)
        page: dict[str, Any] = dict(bounds)
        if start_key is not None and start_key >= prefix:
            page["key"] = _b64(start_key + "\x00")  # the next key after start_key
        if limit:
            page["limit"] = limit
        if revision:
            page["revision"] = revision
        if page["key"] == bounds["key"]:
            answer = await self._read("/v3/kv/range", page, revision)
            result, count = answer, int(answer.get("count", 0))
        else:  # the page and the whole prefix's count, atomically at one revision
            whole = {**bounds, "count_only": True, **({"revision": revision} if revision else {})}
            txn = {"success": [{"request_range": page}, {"request_range": whole}]}
            answer = await self._read("/v3/kv/txn", txn, revision)
            responses = answer.get("responses", [])
            result = responses[0]["response_range"]
            count = int(responses[1]["response_range"].get("count", 0))
        return RangeResult(
            kvs=[_kv(raw) for raw in result.get("kvs", [])],
            revision=revision or int(answer["header"]["revision"]),
            more=bool(result.get("more", False)),
            count=count,
        )

    # -- writes ----------------------------------------------------------

    async def _txn(self, txn: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._post("/v3/kv/txn", txn, idempotent=False)
        except _EtcdError as exc:
            raise StoreError(f"etcd: {exc.message}") from exc

    def _failed_check(self, key: str, expected: int | None, answer: dict[str, Any]) -> StoreError:
        kvs = answer.get("responses", [{}])[0].get("response_range", {}).get("kvs", [])
        if not kvs:
            return KeyNotFoundError(key)
        return ConflictError(key, expected or 0, _kv(kvs[0]).mod_revision)

    async def create(self, key: str, value: bytes) -> KeyValue:
        k = _b64(key)
        answer = await self._txn(
            {
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0}],
                "success": [{"request_put": {"key": k, "value": _b64(value)}}],
            }
        )
        if not answer.get("succeeded"):
            raise KeyExistsError(key)
        revision = int(answer["header"]["revision"])
        return KeyValue(key, value, revision, revision)

    async def update(self, key: str, value: bytes, *, expected_mod_revision: int) -> KeyValue:
        k = _b64(key)
        answer = await self._txn(
            {
                "compare": [
                    _exists(k),
                    {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expected_mod_revision},
                ],
                "success": [{"request_put": {"key": k, "value": _b64(value), "prev_kv": True}}],
                "failure": [{"request_range": {"key": k}}],
            }
        )
        if not answer.get("succeeded"):
            raise self._failed_check(key, expected_mod_revision, answer)
        prev = _kv(answer["responses"][0]["response_put"]["prev_kv"])
        return KeyValue(key, value, prev.create_revision, int(answer["header"]["revision"]))

    async def delete(self, key: str, *, expected_mod_revision: int | None = None) -> KeyValue:
        k = _b64(key)
        compare = [_exists(k)]
        if expected_mod_revision is not None:
            compare.append(
                {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": expected_mod_revision}
            )
        answer = await self._txn(
            {
                "compare": compare,
                "success": [{"request_delete_range": {"key": k, "prev_kv": True}}],
                "failure": [{"request_range": {"key": k}}],
            }
        )
        if not answer.get("succeeded"):
            raise self._failed_check(key, expected_mod_revision, answer)
        prev = _kv(answer["responses"][0]["response_delete_range"]["prev_kvs"][0])
        return KeyValue(key, prev.value, prev.create_revision, int(answer["header"]["revision"]))

    async def compact(self, revision: int) -> None:
        if revision <= self._known_compacted:
            return
        try:
            await self._post("/v3/kv/compaction", {"revision": revision, "physical": True}, idempotent=True)
        except _EtcdError as exc:
            if _COMPACTED in exc.message:
                return  # already compacted at or beyond it
            raise await self._translate(exc, revision) from exc
        self._known_compacted = max(self._known_compacted, revision)

    # -- watch -----------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int) -> EtcdWatcher:
        self._http()
        watcher = EtcdWatcher(self, prefix, after_revision)
        self._watchers.add(watcher)
        return watcher


def _event(raw: dict[str, Any]) -> Event:
    kv = _kv(raw["kv"])
    prev = _kv(raw["prev_kv"]) if raw.get("prev_kv") else None
    if raw.get("type") == "DELETE":
        create = prev.create_revision if prev else 0
        last = prev.value if prev else b""
        return Event("DELETE", KeyValue(kv.key, last, create, kv.mod_revision), prev)
    return Event("PUT", kv, prev)


class EtcdWatcher:
    """Events under a prefix after a revision, read from an etcd watch
    stream by a background task into a small bounded queue (so a slow
    consumer slows the stream, and etcd buffers or catches up for it)."""

    def __init__(self, store: EtcdStore, prefix: str, after_revision: int) -> None:
        self.prefix = prefix
        self._store = store
        self._cursor = after_revision
        self._queue: asyncio.Queue[list[Event] | BaseException | None] = asyncio.Queue(_WATCH_QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._done = False

    def __aiter__(self) -> EtcdWatcher:
        return self

    async def __anext__(self) -> list[Event]:
        if self._done and self._queue.empty():
            raise StopAsyncIteration
        if self._task is None:
            self._task = asyncio.create_task(self._pump(), name=f"etcd-watch:{self.prefix}")
        item = await self._queue.get()
        if item is None:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._done = True
            await self._finish()
            raise item
        return item

    async def close(self) -> None:
        self._done = True
        await self._finish()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def _finish(self) -> None:
        self._store._watchers.discard(self)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self) -> None:
        """Read the stream, reconnecting to the next endpoint when it breaks."""
        failures = 0
        try:
            while True:
                try:
                    await self._stream()
                    failures = 0
                except (httpx.TransportError, _StreamBroken, orjson.JSONDecodeError) as exc:
                    failures += 1
                    self._store._rotate(self._store._current)
                    if failures > 2 * len(self._store.endpoints):
                        raise UnavailableError(f"etcd watch on {self.prefix!r} lost: {exc!r}") from exc
                    await asyncio.sleep(min(0.05 * failures, 1.0))
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            await self._queue.put(exc)
        except Exception as exc:  # never leave the consumer waiting forever
            error = StoreError(f"etcd watch on {self.prefix!r} failed: {exc!r}")
            error.__cause__ = exc
            await self._queue.put(error)

    async def _stream(self) -> None:
        store = self._store
        url = store.endpoints[store._current] + "/v3/watch"
        create = {**_range_bounds(self.prefix), "start_revision": self._cursor + 1, "prev_kv": True}
        store._http()  # raises once the store is closed
        client = store._watch_client
        assert client is not None
        request = client.build_request(
            "POST", url, content=orjson.dumps({"create_request": create}), headers=_JSON
        )
        response = await client.send(request, stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                raise _StreamBroken(f"HTTP {response.status_code}: {response.text[:200]}")
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                message = orjson.loads(line)
                if "error" in message:
                    raise _StreamBroken(str(message["error"]))
                result = message.get("result", {})
                compact = int(result.get("compact_revision", 0))
                if compact:
                    store._known_compacted = max(store._known_compacted, compact)
                    raise CompactedError(self._cursor, compact)
                if result.get("canceled"):
                    raise StoreError(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
                raw_events = result.get("events")
                if raw_events:
                    events = [_event(raw) for raw in raw_events]
                    events = [e for e in events if e.kv.mod_revision > self._cursor]
                    if events:
                        await self._queue.put(events)
                        self._cursor = events[-1].kv.mod_revision
            raise _StreamBroken("watch stream ended")
        finally:
            await response.aclose()


class _StreamBroken(Exception):
    """The watch stream ended or answered an error; reconnect."""
