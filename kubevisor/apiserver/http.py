"""The apiserver's minimal HTTP vocabulary over raw ASGI.

:class:`Request` (method, path, query, headers, body, user) is built once by
the app; handlers return a :class:`Response` (one body) or a
:class:`StreamResponse` (an async iterator of chunks, for watch). Also the
media-type helpers: what the client accepts (JSON, YAML, Table) and how a
request body decodes. Callers: ``app`` and every handler module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
import yaml

from kubevisor.apiserver import errors
from kubevisor.apiserver.config import UserInfo

JSON = dict[str, Any]

JSON_TYPE = "application/json"
YAML_TYPE = "application/yaml"
PROTOBUF_TYPE = "application/vnd.kubernetes.protobuf"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ","
    body: bytes = b""
    user: UserInfo | None = None
    warnings: list[str] = field(default_factory=list)
    raw_query: bytes = b""  # as received, for proxying (parse_query keeps one value a name)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("true", "1")


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class StreamResponse:
    """A chunked response; ``chunks`` is consumed until exhausted or the
    client disconnects (then it is closed)."""

    status: int
    chunks: AsyncIterator[bytes]
    content_type: str = JSON_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[Request], Any]


def parse_query(raw: bytes) -> dict[str, str]:
    if not raw:
        return {}
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))


# --- output negotiation ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """What to send back: plain JSON/YAML, or a Table (``table``), or
    PartialObjectMetadata (``partial``)."""

    media: str = JSON_TYPE
    table: bool = False
    table_version: str = "v1"
    partial: bool = False


JSON_OUT = Output()


def negotiate(accept: str) -> Output:
    """Pick the first acceptable entry of an Accept header. Raises 406 when
    only unsupported types (e.g. protobuf alone) are listed."""
    if not accept:
        return JSON_OUT
    for entry in accept.split(","):
        parts = [p.strip() for p in entry.split(";")]
        media = parts[0].lower()
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        as_ = params.get("as", "")
        if media in (JSON_TYPE, "*/*", "application/*"):
            if as_ == "Table" and params.get("g") == "meta.k8s.io":
                return Output(table=True, table_version=params.get("v", "v1"))
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and \
                    params.get("g") == "meta.k8s.io":
                return Output(partial=True)
            if as_:
                continue
            return JSON_OUT
        if media in (YAML_TYPE, "application/yaml", "text/yaml") and not as_:
            return Output(media=YAML_TYPE)
    raise errors.not_acceptable()


def dump(obj: Any, out: Output = JSON_OUT) -> bytes:
    if out.media == YAML_TYPE:
        return yaml.safe_dump(obj, sort_keys=False).encode()
    return orjson.dumps(obj)


def json_response(status: int, obj: Any, out: Output = JSON_OUT) -> Response:
    return Response(status, dump(obj, out), out.media)


def _clean(value: Any) -> Any:
    """``value`` with lone surrogates (not encodable as UTF-8) replaced."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def status_response(exc: errors.ApiError, out: Output = JSON_OUT) -> Response:
    media = out.media if out.media == YAML_TYPE else JSON_TYPE
    try:
        body = dump(exc.status(), out) if media == YAML_TYPE else orjson.dumps(exc.status())
    except (TypeError, UnicodeEncodeError, yaml.YAMLError):
        body = orjson.dumps(_clean(exc.status()))
        media = JSON_TYPE
    return Response(exc.code, body, media)


# --- input decoding -------------------------------------------------------

BODY_TYPES = (JSON_TYPE, YAML_TYPE, PROTOBUF_TYPE)


def decode_body(req: Request, *, kinds: tuple[str, ...] = BODY_TYPES) -> Any:
    """The request body as JSON-shaped data. 415 for other content types,
    400 for bodies that do not parse."""
    ctype = req.content_type or JSON_TYPE
    if ctype not in kinds:
        raise errors.unsupported_media_type(ctype, list(kinds))
    if not req.body.strip():
        raise errors.bad_request("the request body is empty")
    return decode_bytes(req.body, ctype)


_MAX_YAML_NODES = 1_000_000


class _JSONishLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, as Kubernetes' YAML-to-JSON
    does, and refuses documents whose aliases expand past a million nodes
    ("billion laughs"; kube-apiserver: "excessive aliasing")."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > _MAX_YAML_NODES:
            raise yaml.YAMLError("excessive aliasing")
        return self.construct_document(node)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of the document once aliases are expanded (memoised per node, so
    linear in the composed graph)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a cycle counts once (the constructor rejects it anyway)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        total = min(total, _MAX_YAML_NODES + 1)
        sizes[id(node)] = total
        return total

    return size(root)


_JSONishLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def decode_bytes(body: bytes, ctype: str) -> Any:
    if ctype == PROTOBUF_TYPE:
        from kubevisor.apiserver.protobuf import ProtobufError, decode_object

        try:
            return decode_object(body)
        except ProtobufError as exc:
            raise errors.bad_request(f"unable to decode the protobuf body: {exc}") from exc
    if ctype in (JSON_TYPE, "application/json-patch+json", "application/merge-patch+json",
                 "application/strategic-merge-patch+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc
    try:
        doc = yaml.load(body, Loader=_JSONishLoader)
        orjson.dumps(doc)  # what YAML allows but JSON does not (lone surrogates, big ints)
        return doc
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"error converting YAML to JSON: {exc}") from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise errors.bad_request(f"error converting YAML to JSON: {exc}") from exc
