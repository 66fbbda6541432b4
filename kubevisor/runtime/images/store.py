"""The image store of one host: :class:`LocalImageStore`, the
:class:`~kubevisor.runtime.types.ImageStore` the node agent uses.

Layout under the root directory (``<data-dir>/images``)::

    blobs/sha256/<hex>     manifests, indexes, configs, layer blobs (blobs.py)
    layers/<diff-id hex>/  each layer unpacked once, an overlayfs lower dir (layers.py)
    refs.json              name → digest (refs.py)
    tmp/, blobs/.tmp/      work in progress, renamed into place when whole

``pull`` resolves the name at the registry, then fetches only the blobs it
lacks and unpacks only the layers it lacks; concurrent pulls share each
download and each unpacking (one flight per digest). The name is recorded
last, so ``get`` (no network) only ever sees complete images. Root
filesystems for containers come from :mod:`.rootfs`; ``prune`` removes the
images not kept and every blob and layer no kept image needs.

Errors: :class:`~kubevisor.runtime.images.reference.InvalidImageNameError`
for a bad name (kubelet: InvalidImageName); during ``pull``,
:class:`~kubevisor.runtime.errors.ImagePullError` /
:class:`~kubevisor.runtime.errors.ImageNotFoundError` for what the registry
said and :class:`~kubevisor.runtime.errors.ImageFormatError` for malformed
content, each message starting ``failed to pull and unpack image "<ref>"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubevisor.runtime.errors import ImageError, ImageFormatError, ImagePullError
from kubevisor.runtime.images import rootfs
from kubevisor.runtime.images.archive import ingest_oci_archive
from kubevisor.runtime.images.blobs import BlobStore, DigestMismatchError
from kubevisor.runtime.images.flight import SingleFlight
from kubevisor.runtime.images.layers import LayerStore
from kubevisor.runtime.images.manifest import (
    REF_NAME_ANNOTATION,
    Descriptor,
    Manifest,
    is_index,
    media_type_of,
    parse_config,
    parse_index,
    parse_manifest,
    select_platform,
)
from kubevisor.runtime.images.reference import Reference, parse_reference, registry_key
from kubevisor.runtime.images.refs import RefEntry, RefIndex
from kubevisor.runtime.images.registry import RegistryClient, new_http_client
from kubevisor.runtime.types import Image, ImageConfig, Progress, RegistryAuth

#: Fetches one manifest by digest: (body, content type).
_FetchManifest = Callable[[str], Awaitable[tuple[bytes, str]]]


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :meth:`LocalImageStore.prune` removed."""

    refs: list[str] = field(default_factory=list)
    blobs: int = 0
    layers: int = 0
    bytes_freed: int = 0


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A stored image, as ``get`` rebuilds it from its blobs."""

    id: str
    config: ImageConfig
    manifest: Manifest
    diff_ids: list[str]
    size: int


class _Gate:
    """Many pulls/imports/prepares at once, or one prune alone."""

    def __init__(self) -> None:
        self._users = 0
        self._pruning = False
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._pruning)
            self._users += 1
        try:
            yield
        finally:
            async with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._pruning and self._users == 0)
            self._pruning = True
        try:
            yield
        finally:
            async with self._cond:
                self._pruning = False
                self._cond.notify_all()


def pick_auth(auth: Mapping[str, RegistryAuth] | None, ref: Reference) -> RegistryAuth | None:
    """The credentials for ``ref``: keys are registry hosts as in a
    ``.dockerconfigjson`` (``127.0.0.1:5000``, ``https://index.docker.io/v1/``)
    or host/path prefixes; the longest matching key wins."""
    best: tuple[int, RegistryAuth] | None = None
    for key, value in (auth or {}).items():
        norm = registry_key(key)
        if (ref.name == norm or ref.name.startswith(norm + "/")) and (best is None or len(norm) > best[0]):
            best = (len(norm), value)
    return best[1] if best else None


class LocalImageStore:
    """Images on this host, content-addressed under ``root``.

    ``overlay``: None tries overlayfs and falls back to copies, False always
    copies. ``http``: an httpx client to use (the store makes its own, closed
    by :meth:`aclose`, otherwise).
    """

    def __init__(self, root: str | os.PathLike[str], *, overlay: bool | None = None,
                 http: httpx.AsyncClient | None = None) -> None:  # fmt: skip
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._blobs = BlobStore(self.root)
        self._layers = LayerStore(self.root)
        self._refs = RefIndex(self.root)
        self._empty = self.root / "empty"  # the lower dir of an image with no layers
        self._empty.mkdir(exist_ok=True)
        self._overlay = overlay is not False
        self._http = http
        self._own_http = http is None
        self._blob_flight: SingleFlight[None] = SingleFlight()
        self._resolved: dict[str, _Resolved] = {}
        self._gate = _Gate()

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    # -------------------------------------------------------------- reads

    def _resolve(self, manifest_digest: str) -> _Resolved:
        """Config, layers and size of a stored manifest (memoized: blobs never change)."""
        known = self._resolved.get(manifest_digest)
        if known is not None:
            return known
        manifest = parse_manifest(self._blobs.read(manifest_digest))
        config, diff_ids = parse_config(self._blobs.read(manifest.config.digest))
        if len(diff_ids) != len(manifest.layers):
            raise ImageFormatError(
                f"image {manifest_digest}: {len(manifest.layers)} layers but "
                f"{len(diff_ids)} diff_ids in its config"
            )
        size = manifest.config.size + sum(layer.size for layer in manifest.layers)
        resolved = _Resolved(manifest.config.digest, config, manifest, diff_ids, size)
        self._resolved[manifest_digest] = resolved
        return resolved

    def _image(self, ref: str, entry: RefEntry) -> Image | None:
        try:
            resolved = self._resolve(entry.manifest)
        except (FileNotFoundError, ImageFormatError):
            return None
        if not all(self._layers.has(d) for d in resolved.diff_ids):
            return None
        return Image(ref=ref, id=resolved.id, digest=entry.digest, config=resolved.config, size=resolved.size)  # fmt: skip

    def get(self, ref: str) -> Image | None:
        """The local image for ``ref`` (by tag or digest), without network;
        raises InvalidImageNameError for a bad name."""
        parsed = parse_reference(ref)
        entry = self._refs.get(str(parsed))
        return self._image(ref, entry) if entry else None

    def list(self) -> list[Image]:
        """Every named image (one entry per name, canonical names)."""
        images = (self._image(ref, entry) for ref, entry in self._refs.load().items())
        return [image for image in images if image is not None]

    # -------------------------------------------------------------- pulls

    async def _platform_manifest(self, body: bytes, digest: str, content_type: str,
                                 fetch: _FetchManifest, *, failed: str) -> str:  # fmt: skip
        """Store the document ``body`` and, for an index, this platform's
        manifest; the platform manifest's digest."""
        self._blobs.put(body, digest)
        if not is_index(media_type_of(body, content_type)):
            return digest
        chosen = select_platform(parse_index(body))
        if chosen is None:
            raise ImagePullError(f"{failed}: no match for platform in manifest {digest}: not found")
        if self._blobs.has(chosen.digest):
            inner, inner_type = self._blobs.read(chosen.digest), chosen.media_type
        else:
            inner, inner_type = await fetch(chosen.digest)
        if is_index(media_type_of(inner, inner_type)):
            raise ImageFormatError(f"{failed}: nested image indexes are not supported")
        self._blobs.put(inner, chosen.digest)
        return chosen.digest

    async def _fetch_blob(self, client: RegistryClient | None, desc: Descriptor, *,
                          failed: str, progress: Progress | None) -> None:  # fmt: skip
        if self._blobs.has(desc.digest):
            return
        if client is None:
            raise ImageFormatError(f"{failed}: blob {desc.digest} is missing from the archive")

        async def download() -> None:
            if self._blobs.has(desc.digest):
                return
            writer = self._blobs.begin(desc.digest)
            try:
                await client.blob(desc.digest, writer.write, size=desc.size, progress=progress)
                await asyncio.to_thread(writer.commit)  # fsync off the event loop
            except DigestMismatchError as exc:
                raise ImagePullError(f"{failed}: failed to copy: {desc.digest}: {exc}") from exc
            finally:
                writer.abort()  # a no-op once committed

        await self._blob_flight.run(desc.digest, download)

    async def _complete(self, manifest_digest: str, client: RegistryClient | None, *,
                        failed: str, progress: Progress | None) -> _Resolved:  # fmt: skip
        """Fetch the config and layer blobs this image lacks and unpack its layers."""
        manifest = parse_manifest(self._blobs.read(manifest_digest))
        await self._fetch_blob(client, manifest.config, failed=failed, progress=progress)
        resolved = self._resolve(manifest_digest)

        async def layer(desc: Descriptor, diff_id: str) -> None:
            if self._layers.has(diff_id):
                return
            await self._fetch_blob(client, desc, failed=failed, progress=progress)
            await self._layers.ensure(diff_id, self._blobs.path(desc.digest))

        # Every layer runs to its end, even when another fails: nothing is
        # left working in the background once this returns or raises (and
        # what did land is content-addressed, kept for the retry).
        jobs = zip(resolved.manifest.layers, resolved.diff_ids, strict=True)
        outcomes = await asyncio.gather(*(layer(d, i) for d, i in jobs), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return resolved

    async def pull(self, ref: str, *, auth: Mapping[str, RegistryAuth] | None = None,
                   progress: Progress | None = None) -> Image:  # fmt: skip
        """Resolve ``ref`` at its registry and fetch what is missing (a
        reference by digest already in the store needs no network)."""
        parsed = parse_reference(ref)
        if parsed.digest and (present := self.get(ref)) is not None:
            return present
        failed = f'failed to pull and unpack image "{parsed}"'
        if self._http is None:
            self._http = new_http_client()
        client = RegistryClient(self._http, parsed, auth=pick_auth(auth, parsed))

        async def fetch(digest: str) -> tuple[bytes, str]:
            body, _, content_type = await client.manifest(digest)
            return body, content_type

        async with self._gate.shared():
            try:
                body, top, content_type = await client.manifest(parsed.object)
                manifest_digest = await self._platform_manifest(body, top, content_type, fetch, failed=failed)  # fmt: skip
                resolved = await self._complete(manifest_digest, client, failed=failed, progress=progress)  # fmt: skip
            except ImageError as exc:
                raise _prefixed(exc, failed) from exc.__cause__
            entry = RefEntry(digest=top, manifest=manifest_digest)
            self._refs.set({str(parsed): entry, str(parsed.with_digest(top)): entry})
        return Image(ref=ref, id=resolved.id, digest=top, config=resolved.config, size=resolved.size)  # fmt: skip

    # ------------------------------------------------------------- import

    async def import_archive(self, path: str, *, progress: Progress | None = None) -> list[Image]:
        """Load an OCI image layout tar; one Image per index entry (``ref`` is
        its ``org.opencontainers.image.ref.name``, "" when it has none)."""
        failed = f'failed to import image archive "{path}"'
        images: list[Image] = []
        async with self._gate.shared():
            try:
                entries = await asyncio.to_thread(ingest_oci_archive, Path(path), self._blobs, progress=progress)  # fmt: skip
            except OSError as exc:
                raise ImageError(f"{failed}: {exc}") from exc
            updates: dict[str, RefEntry] = {}

            async def no_fetch(digest: str) -> tuple[bytes, str]:
                raise ImageFormatError(f"{failed}: manifest {digest} is missing from the archive")

            for desc in entries:
                name = desc.annotations.get(REF_NAME_ANNOTATION, "")
                parsed = parse_reference(name) if name else None
                body = self._blobs.read(desc.digest) if self._blobs.has(desc.digest) else None
                if body is None:
                    raise ImageFormatError(f"{failed}: manifest {desc.digest} is missing from the archive")  # fmt: skip
                try:
                    manifest_digest = await self._platform_manifest(body, desc.digest, desc.media_type, no_fetch, failed=failed)  # fmt: skip
                    resolved = await self._complete(manifest_digest, None, failed=failed, progress=progress)  # fmt: skip
                except ImageError as exc:
                    raise _prefixed(exc, failed) from exc.__cause__
                if parsed is not None:
                    entry = RefEntry(digest=desc.digest, manifest=manifest_digest)
                    updates[str(parsed)] = entry
                    updates[str(parsed.with_digest(desc.digest))] = entry
                images.append(Image(ref=name, id=resolved.id, digest=desc.digest, config=resolved.config, size=resolved.size))  # fmt: skip
            if updates:
                self._refs.set(updates)
        return images

    # ------------------------------------------------------------- rootfs

    async def prepare_rootfs(self, image: Image, dest: str) -> str:
        """``dest/rootfs``: an overlay of the image's layers with its upper and
        work dirs in ``dest/upper`` and ``dest/work`` (a copy when overlayfs
        is unavailable); idempotent; a failure leaves nothing mounted."""
        async with self._gate.shared():
            entries = self._refs.load().values()
            manifest_digest = next((e.manifest for e in entries if e.digest == image.digest), image.digest)  # fmt: skip
            try:
                resolved = self._resolve(manifest_digest)
            except FileNotFoundError as exc:
                raise ImageError(f"image {image.ref or image.id} is not in the store; pull it first") from exc  # fmt: skip
            if resolved.id != image.id:
                raise ImageError(f"image {image.ref or image.digest}: stored config {resolved.id} is not {image.id}")  # fmt: skip
            missing = [d for d in resolved.diff_ids if not self._layers.has(d)]
            if missing:
                raise ImageError(f"image {image.ref or image.id}: layer {missing[0]} is missing; pull it again")  # fmt: skip
            layers = [self._layers.path(d) for d in resolved.diff_ids] or [self._empty]
            path = await asyncio.to_thread(rootfs.prepare, layers, Path(dest), overlay=self._overlay)
        return str(path)

    async def release_rootfs(self, dest: str) -> None:
        """Unmount and remove ``dest``; idempotent."""
        await asyncio.to_thread(rootfs.release, Path(dest))

    # ---------------------------------------------------------------- gc

    async def prune(self, keep: set[str]) -> PruneResult:
        """Forget every image whose id (config digest) is not in ``keep`` and
        delete the blobs and layers no remaining image needs. The caller keeps
        the images of every container that has a root filesystem."""
        async with self._gate.exclusive():
            return await asyncio.to_thread(self._prune, keep)

    def _prune(self, keep: set[str]) -> PruneResult:
        dropped: list[str] = []
        live_blobs: set[str] = set()
        live_layers: set[str] = set()
        for ref, entry in self._refs.load().items():
            try:
                resolved = self._resolve(entry.manifest)
            except (FileNotFoundError, ImageFormatError):
                dropped.append(ref)
                continue
            if resolved.id not in keep:
                dropped.append(ref)
                continue
            live_blobs |= {entry.digest, entry.manifest, resolved.id}
            live_blobs |= {layer.digest for layer in resolved.manifest.layers}
            live_layers |= set(resolved.diff_ids)
        if dropped:
            self._refs.remove(set(dropped))
        freed = blobs = layers = 0
        for digest in self._blobs.all() - live_blobs:
            freed += self._blobs.delete(digest)
            self._resolved.pop(digest, None)
            blobs += 1
        for diff_id in self._layers.all() - live_layers:
            self._layers.delete(diff_id)
            layers += 1
        return PruneResult(refs=sorted(dropped), blobs=blobs, layers=layers, bytes_freed=freed)


def _prefixed(exc: ImageError, failed: str) -> ImageError:
    """``exc`` with its message prefixed by what failed (unless it already says)."""
    if str(exc).startswith("failed to "):
        return exc
    wrapped = type(exc)(f"{failed}: {exc}")
    wrapped.__cause__ = exc
    return wrapped
