"""Bootstrap-token authentication, as kube-apiserver's
``--enable-bootstrap-token-auth``: a bearer token ``<id>.<secret>`` is
accepted when the Secret ``kube-system/bootstrap-token-<id>`` of type
``bootstrap.kubernetes.io/token`` holds that id and secret, allows
authentication (``usage-bootstrap-authentication: "true"``) and has not
expired. The user is ``system:bootstrap:<id>`` in the group
``system:bootstrappers`` plus the Secret's ``auth-extra-groups``.

:class:`BootstrapTokens` keeps every such Secret in memory, filled at start
and kept current by a store watch (as :mod:`kubevisor.apiserver.namespaces`
does), so a lookup on the request path costs one dict access. Created and
started by the app's lifespan; :meth:`BootstrapTokens.authenticate` is
called by the app's authentication for tokens of the bootstrap shape;
:func:`anonymous_allowed` names the one read (``cluster-info``) a host
that has no credentials yet may make.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kubevisor.apiserver.config import UserInfo
from kubevisor.store import errors as store_errors
from kubevisor.store.base import Store

log = logging.getLogger(__name__)

PREFIX = "/registry/core/secrets/kube-system/bootstrap-token-"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
GROUP = "system:bootstrappers"
USER_PREFIX = "system:bootstrap:"
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
_EXTRA_GROUP_RE = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
#: The one object anonymous callers may read (kubeadm grants ``get`` on it to
#: system:anonymous): the CA and server a joining host starts from.
CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"


def anonymous_allowed(method: str, path: str) -> bool:
    """May a request without credentials go ahead (as system:anonymous)?"""
    return method == "GET" and path == CLUSTER_INFO_PATH


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """What one bootstrap-token Secret allows."""

    secret: str
    expires: dt.datetime | None
    user: UserInfo


def entry_of(secret: dict[str, Any]) -> tuple[str, TokenEntry] | None:
    """The (token id, entry) a Secret defines, or None when it is not a
    usable bootstrap token for authentication (wrong type, name or data,
    being deleted, authentication usage not "true", malformed expiration
    or groups)."""
    if secret.get("type") != SECRET_TYPE or (secret.get("metadata") or {}).get("deletionTimestamp"):
        return None
    data = secret.get("data") or {}
    try:
        values = {k: base64.b64decode(v, validate=True).decode() for k, v in data.items()}
    except (binascii.Error, UnicodeDecodeError, TypeError):
        return None
    token_id, token_secret = values.get("token-id", ""), values.get("token-secret", "")
    name = (secret.get("metadata") or {}).get("name", "")
    if not TOKEN_RE.match(f"{token_id}.{token_secret}") or name != f"bootstrap-token-{token_id}":
        return None
    if values.get("usage-bootstrap-authentication") != "true":
        return None
    expires: dt.datetime | None = None
    if values.get("expiration"):
        try:
            expires = dt.datetime.fromisoformat(values["expiration"].replace("Z", "+00:00"))
        except ValueError:
            return None
        if expires.tzinfo is None:
            return None
    extra = [g.strip() for g in values.get("auth-extra-groups", "").split(",") if g.strip()]
    if any(not _EXTRA_GROUP_RE.match(g) for g in extra):
        return None
    groups = (GROUP, *dict.fromkeys(g for g in extra if g != GROUP), "system:authenticated")
    user = UserInfo(name=USER_PREFIX + token_id, groups=groups)
    return token_id, TokenEntry(secret=token_secret, expires=expires, user=user)


class BootstrapTokens:
    """Token id -> entry for every bootstrap-token Secret in the store."""

    def __init__(self, store: Store, *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._store = store
        self._clock = clock
        self._entries: dict[str, TokenEntry] = {}
        # Secret name -> token id, so that a delete event finds its entry.
        self._by_name: dict[str, str] = {}

    def authenticate(self, token: str) -> UserInfo | None:
        """The user of a valid, unexpired bootstrap token; None otherwise."""
        match = TOKEN_RE.match(token)
        if match is None:
            return None
        entry = self._entries.get(match.group(1))
        if entry is None or not hmac.compare_digest(entry.secret, match.group(2)):
            return None
        if entry.expires is not None and entry.expires <= self._clock():
            return None
        return entry.user

    def note(self, name: str, secret: dict[str, Any] | None) -> None:
        """Record a Secret's new state (None: deleted)."""
        old = self._by_name.pop(name, None)
        if old is not None:
            self._entries.pop(old, None)
        found = entry_of(secret) if secret is not None else None
        if found is not None:
            token_id, entry = found
            self._entries[token_id] = entry
            self._by_name[name] = token_id

    async def load(self) -> int:
        res = await self._store.range(PREFIX)
        self._entries.clear()
        self._by_name.clear()
        for kv in res.kvs:
            self.note(_name(kv.key), orjson.loads(kv.value))
        return res.revision

    async def sync_loop(self, revision: int) -> None:
        """Follow the store until cancelled (or the store closes)."""
        while True:
            watcher = self._store.watch(PREFIX, after_revision=revision)
            try:
                async for events in watcher:
                    for ev in events:
                        revision = ev.revision
                        value = orjson.loads(ev.kv.value) if ev.type == "PUT" else None
                        self.note(_name(ev.kv.key), value)
                return
            except store_errors.CompactedError:
                revision = await self.load()
            except store_errors.StoreError:
                log.warning("bootstrap token watch ended; restarting", exc_info=True)
                await asyncio.sleep(1.0)
                revision = await self.load()
            finally:
                await watcher.close()


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]
