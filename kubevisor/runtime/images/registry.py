"""A registry client: Docker Registry HTTP API v2 / OCI distribution, pull side.

One :class:`RegistryClient` per (pull, repository), over the store's shared
``httpx.AsyncClient``. It fetches manifests (by tag or digest) and streams
blobs; the store decides what to fetch and checks digests as it writes.

Transport: plain HTTP for loopback registries (``localhost``, 127.0.0.0/8,
``::1``: containerd and kubelet allow these without TLS), HTTPS for every
other host; docker.io is reached at registry-1.docker.io.

Authentication, on a 401 answer: a ``Bearer`` challenge is answered by
fetching a token from the challenge's realm (with the credentials as HTTP
Basic auth, or anonymously), a ``Basic`` challenge by sending the
credentials. :class:`~kubevisor.runtime.types.RegistryAuth` ``token`` is
sent as the registry bearer token as is (a ``.dockerconfigjson``
``registrytoken``).

Errors are translated where they enter into
:class:`~kubevisor.runtime.errors.ImagePullError` (and
:class:`~kubevisor.runtime.errors.ImageNotFoundError` for an unknown
repository or tag) with containerd's wording, which kubelet shows in the
ErrImagePull message: ``failed to pull and unpack image "<ref>": ...``.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from kubevisor.runtime.errors import ImageNotFoundError, ImagePullError
from kubevisor.runtime.images.manifest import ACCEPT, digest_of
from kubevisor.runtime.images.reference import Reference
from kubevisor.runtime.types import Progress, RegistryAuth

#: Manifests larger than this are refused (containerd's limit too).
MAX_MANIFEST_BYTES = 4 << 20
_CHUNK = 1 << 20
_CHALLENGE_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def new_http_client() -> httpx.AsyncClient:
    """The HTTP client the store shares among its pulls."""
    return httpx.AsyncClient(
        follow_redirects=True,
        timeout=httpx.Timeout(60.0, connect=10.0),
        headers={"User-Agent": "kubevisor-image-store"},
        # registries on other hosts are reached directly, never through an
        # environment proxy that loopback registries would also be sent to
        trust_env=False,
    )


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` → ("bearer", {realm:…, service:…})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): (quoted if quoted else bare) for k, quoted, bare in _CHALLENGE_RE.findall(rest)}
    return scheme.lower(), params


def _server_message(response: httpx.Response) -> str:
    """``code: message`` from a registry error body, as containerd quotes it."""
    try:
        errors: Any = response.json().get("errors")
        first = errors[0]
        return f"{str(first.get('code', '')).lower()}: {first.get('message', '')}".strip(": ")
    except Exception:  # a body that is not the registry's error JSON
        return f"{response.status_code} {response.reason_phrase}"


class RegistryClient:
    """Pulls from one repository of one registry on behalf of one image pull."""

    def __init__(self, http: httpx.AsyncClient, ref: Reference, *, auth: RegistryAuth | None = None) -> None:  # fmt: skip
        self._http = http
        self._ref = ref
        self._auth = auth or RegistryAuth()
        scheme = "http" if ref.insecure else "https"
        self._base = f"{scheme}://{ref.api_host}/v2/{ref.path}"
        self._authorization: str | None = None
        self._failed = f'failed to pull and unpack image "{ref}"'

    # ----------------------------------------------------------- errors

    def _resolve_error(self, response: httpx.Response) -> ImagePullError:
        where = f'{self._failed}: failed to resolve reference "{self._ref}"'
        if response.status_code == 404:
            return ImageNotFoundError(f"{where}: {self._ref}: not found")
        if response.status_code in (401, 403):
            return ImagePullError(
                f"{where}: pull access denied, repository does not exist or may require "
                f"authorization: server message: {_server_message(response)}"
            )
        return ImagePullError(f"{where}: {self._unexpected(response)}")

    def _copy_error(self, digest: str, detail: str) -> ImagePullError:
        return ImagePullError(f"{self._failed}: failed to copy: {digest}: {detail}")

    @staticmethod
    def _unexpected(response: httpx.Response) -> str:
        request = response.request
        return (f"unexpected status from {request.method} request to {request.url}: "
                f"{response.status_code} {response.reason_phrase}")  # fmt: skip

    # ------------------------------------------------------------- auth

    async def _authenticate(self, response: httpx.Response) -> bool:
        """Answer the challenge of a 401; False when there is nothing to try."""
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        basic = None
        if self._auth.username or self._auth.password:
            pair = f"{self._auth.username}:{self._auth.password}".encode()
            basic = "Basic " + base64.b64encode(pair).decode()
        if scheme == "basic":
            if basic is None or self._authorization == basic:
                return False
            self._authorization = basic
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        if self._auth.token and not basic:
            if self._authorization == f"Bearer {self._auth.token}":
                return False
            self._authorization = f"Bearer {self._auth.token}"
            return True
        if self._authorization is not None and self._authorization.startswith("Bearer "):
            return False  # a token was fetched and still refused
        query = {"scope": params.get("scope") or f"repository:{self._ref.path}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        headers = {"Authorization": basic} if basic else {}
        try:
            answer = await self._http.get(params["realm"], params=query, headers=headers)
        except httpx.HTTPError as exc:
            raise ImagePullError(f"{self._failed}: failed to authorize: failed to fetch token from "
                                 f"{params['realm']}: {exc}") from exc  # fmt: skip
        if answer.status_code != 200:
            kind = "oauth" if basic else "anonymous"
            raise ImagePullError(
                f"{self._failed}: failed to authorize: failed to fetch {kind} token: "
                f"{self._unexpected(answer)}"
            )
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise ImagePullError(f"{self._failed}: failed to authorize: no token in the answer of {params['realm']}")  # fmt: skip
        self._authorization = f"Bearer {token}"
        return True

    @contextlib.asynccontextmanager
    async def _open(self, url: str, *, accept: str = "", what: str) -> AsyncIterator[httpx.Response]:
        """GET ``url`` as a stream, answering one auth challenge; transport
        errors become :class:`ImagePullError`."""
        for _attempt in range(3):
            headers = {"Accept": accept} if accept else {}
            if self._authorization:
                headers["Authorization"] = self._authorization
            request = self._http.build_request("GET", url, headers=headers)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise ImagePullError(f'{self._failed}: {what}: failed to do request: Get "{url}": {exc}') from exc  # fmt: skip
            if response.status_code >= 300:
                try:  # error bodies are small; read them for their message
                    await response.aread()
                except httpx.HTTPError:
                    pass
                finally:
                    await response.aclose()
                if response.status_code == 401 and await self._authenticate(response):
                    continue
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise AssertionError("unreachable: authentication loops at most twice")

    # ------------------------------------------------------------ reads

    async def manifest(self, reference: str) -> tuple[bytes, str, str]:
        """The manifest (or index) for a tag or digest: (body, digest,
        content type). A digest reference is checked against the body."""
        url = f"{self._base}/manifests/{reference}"
        async with self._open(url, accept=ACCEPT, what=f'failed to resolve reference "{self._ref}"') as response:  # fmt: skip
            if response.status_code != 200:
                raise self._resolve_error(response)
            length = int(response.headers.get("content-length") or 0)
            if length > MAX_MANIFEST_BYTES:
                raise ImagePullError(f"{self._failed}: manifest of {length} bytes exceeds the limit")
            try:
                body = await response.aread()
            except httpx.HTTPError as exc:
                raise ImagePullError(f"{self._failed}: reading manifest: {exc}") from exc
        digest = digest_of(body)
        if reference.startswith("sha256:") and digest != reference:
            raise ImagePullError(f"{self._failed}: manifest digest {digest} does not match {reference}")
        return body, digest, response.headers.get("content-type", "")

    async def blob(self, digest: str, sink: Callable[[bytes], None], *, size: int | None = None,
                   progress: Progress | None = None) -> None:  # fmt: skip
        """Stream blob ``digest`` into ``sink``; the caller checks the digest."""
        url = f"{self._base}/blobs/{digest}"
        async with self._open(url, what=f"failed to copy: {digest}") as response:
            if response.status_code == 404:
                raise self._copy_error(digest, "not found")
            if response.status_code in (401, 403):
                raise self._copy_error(digest, f"pull access denied: server message: {_server_message(response)}")  # fmt: skip
            if response.status_code != 200:
                raise self._copy_error(digest, self._unexpected(response))
            total = size if size else int(response.headers.get("content-length") or 0) or None
            done = 0
            try:
                async for chunk in response.aiter_raw(_CHUNK):
                    sink(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(digest, done, total)
            except httpx.HTTPError as exc:
                raise self._copy_error(digest, f"reading the body: {exc}") from exc
