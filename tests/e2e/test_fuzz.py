"""Hostile input over real HTTPS: hypothesis-generated methods, paths
(garbage, traversal, unicode), query parameters, content types, Accept
headers and bodies (malformed JSON/YAML, wrong kinds, deep nesting, huge).
Every answer must be a 2xx where legitimate or a 4xx ``kind: Status`` —
never a 5xx — and the server must still be ready afterwards."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import KubevisorServer, running_server

# one worker runs the whole module in order: the readiness check comes last
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-fuzz")]


def seed(server: KubevisorServer) -> None:
    """Namespaces the fuzzer may wreck (fuzz, fuzz-other) and one it never
    targets (stable), each with a ConfigMap "existing"."""
    with server.client() as http_client:
        for name in ("fuzz", "fuzz-other", "stable"):
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            assert http_client.post("/api/v1/namespaces", json=namespace).is_success
            configmap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "existing"},
                "data": {"a": "b"},
            }
            response = http_client.post(f"/api/v1/namespaces/{name}/configmaps", json=configmap)
            assert response.is_success, response.text


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubevisorServer]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with running_server(tmp / "data", store="sqlite") as server:
        seed(server)
        yield server


@pytest.fixture
def own_target(tmp_path: Path) -> Iterator[KubevisorServer]:
    """A server of its own, for inputs that may wedge a broken server."""
    with running_server(tmp_path / "data", store="sqlite") as server:
        seed(server)
        yield server


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def send(
    server: KubevisorServer,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> Answer:
    """One raw request (no client-side path normalisation); streaming 2xx
    answers (watches) are closed after the headers."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=server.ssl_context(), timeout=20
    )
    all_headers = dict(headers or {})
    if auth:
        all_headers["Authorization"] = f"Bearer {server.token}"
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        content_type = response.getheader("Content-Type") or ""
        streaming = response.getheader("Content-Length") is None and response.status < 300
        data = b"" if streaming or method == "HEAD" else response.read()
        return Answer(response.status, content_type, data)
    finally:
        conn.close()


def check(answer: Answer, method: str, what: object) -> None:
    assert answer.status < 500, (answer.status, answer.body[:500], what)
    assert answer.status >= 200, (answer.status, what)
    if answer.status >= 400 and method != "HEAD":
        try:
            if "yaml" in answer.content_type:
                status = yaml.safe_load(answer.body)
            else:
                status = json.loads(answer.body)
        except (ValueError, yaml.YAMLError) as exc:
            raise AssertionError(
                f"error body is not a Status: {answer.body[:300]!r} ({what})"
            ) from exc
        assert isinstance(status, dict), (status, what)
        assert status.get("kind") == "Status", (status, what)
        assert status.get("apiVersion") == "v1", (status, what)
        assert status.get("status") == "Failure", (status, what)
        assert status.get("code") == answer.status, (status, answer.status, what)
        assert isinstance(status.get("message"), str), (status, what)


def assert_ready(server: KubevisorServer) -> None:
    answer = send(server, "GET", "/readyz")
    assert (answer.status, answer.body.strip()) == (200, b"ok")


# -- strategies -------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
NAMESPACES = st.sampled_from(["fuzz", "fuzz-other", "default", "nope", "kube-system"])
NAMES = st.one_of(
    st.sampled_from(["existing", "x", "a" * 300, "UPPER", "with.dot", "-lead", "trail-"]),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]),
        min_size=1,
        max_size=20,
    ).map(lambda s: urllib.parse.quote(s, safe="")),
)
RESOURCES = st.sampled_from(
    [
        ("/api/v1", "configmaps"),
        ("/api/v1", "pods"),
        ("/api/v1", "secrets"),
        ("/api/v1", "services"),
        ("/api/v1", "events"),
        ("/apis/apps/v1", "deployments"),
        ("/apis/coordination.k8s.io/v1", "leases"),
        ("/api/v1", "nothings"),
        ("/apis/nope.example/v1", "things"),
        ("/apis/apps/v9", "deployments"),
    ]
)
SUBRESOURCES = st.sampled_from(["", "/status", "/scale", "/finalize", "/exec", "/log", "/x/y/z"])
GARBAGE_SEGMENTS = st.sampled_from(
    [
        "..",
        "%2e%2e",
        "%2E%2E%2F",
        "...",
        "%00",
        "%ff",
        "%",
        "%zz",
        "~",
        "*",
        "%2F",
        ";x=1",
        "\u00e9t\u00e9",
        "%F0%9F%92%A5",
        "%C0%AE%C0%AE",
        "a" * 1000,
        "",
        "api",
        "apis",
        "v1",
        "namespaces",
        "watch",
        "openapi",
        "v3",
    ]
).map(lambda seg: seg if seg.isascii() else urllib.parse.quote(seg))


@st.composite
def paths(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(
            st.sampled_from(
                [
                    "/",
                    "/api",
                    "/api/",
                    "/api/v1",
                    "/apis",
                    "/apis/",
                    "/apis/apps",
                    "/apis/apps/v1",
                    "/version",
                    "/healthz",
                    "/livez",
                    "/readyz",
                    "/openapi/v3",
                    "/openapi/v3/api/v1",
                    "/openapi/v3/apis/apps/v1",
                    "/openapi/v2",
                    "/metrics",
                    "/api/v1/namespaces",
                    "/api/v1/watch/namespaces",
                    "/api/v1/nodes",
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                ]
            )
        )
    if kind == 1:
        prefix, plural = draw(RESOURCES)
        ns = draw(NAMESPACES)
        path = f"{prefix}/namespaces/{ns}/{plural}"
        if draw(st.booleans()):
            path += "/" + draw(NAMES) + draw(SUBRESOURCES)
        if draw(st.booleans()):
            path = path.replace(prefix, prefix + "/watch", 1)
        return path
    if kind == 2:
        prefix, plural = draw(RESOURCES)
        return f"{prefix}/{plural}" + ("/" + draw(NAMES) if draw(st.booleans()) else "")
    segments = draw(st.lists(st.one_of(GARBAGE_SEGMENTS, NAMES), min_size=1, max_size=8))
    root = draw(st.sampled_from(["", "/api", "/api/v1", "/apis", "/api/v1/namespaces/fuzz"]))
    return root + "/" + "/".join(segments)


QUERY_KEYS = st.sampled_from(
    [
        "limit",
        "continue",
        "watch",
        "resourceVersion",
        "resourceVersionMatch",
        "labelSelector",
        "fieldSelector",
        "timeoutSeconds",
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "propagationPolicy",
        "gracePeriodSeconds",
        "orphanDependents",
        "force",
        "pretty",
        "allowWatchBookmarks",
        "sendInitialEvents",
        "includeObject",
        "timeout",
        "bogus",
    ]
)
QUERY_VALUES = st.one_of(
    st.sampled_from(
        [
            "-1",
            "0",
            "1",
            "abc",
            "maybe",
            "true",
            "false",
            "1e99",
            "99999999999999999999999",
            "",
            "All",
            "Strict",
            "Warn",
            "Foreground",
            "a in (",
            "=",
            "x=,",
            "!",
            "a!=b,c",
            "metadata.name=x",
            "spec.nope=1",
            "NotOlderThan",
            "Exact",
            "\u2603",
            "%ZZ",
            "1s",
            "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MSwic3RhcnQiOiJ4In0",
            "AAAA",
            "-5s",
        ]
    ),
    st.text(max_size=30),
)


@st.composite
def queries(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4))
    pairs = [(k, v) for k, v in pairs if not (k == "watch" and v in {"1", "true"})]
    if not pairs:
        return ""
    encoded = urllib.parse.urlencode(pairs)
    if draw(st.booleans()):
        # also raw, unescaped forms
        encoded = "&".join(
            f"{k}={v}"
            for k, v in pairs
            if v.isascii() and v.isprintable() and not {" ", "#"} & set(v)
        )
    return "?" + encoded if encoded else ""


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 9))
    name = draw(st.sampled_from(["existing", "fresh", "Bad_Name", "", "a" * 300, "\u00e9"]))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.binary(max_size=200))
    if kind == 2:
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == 3:  # plausible objects with wrong bits
        obj = {
            "apiVersion": draw(st.sampled_from(["v1", "apps/v1", "v2", "", "nope/v1", 7])),
            "kind": draw(st.sampled_from(["ConfigMap", "Pod", "Deployment", "Status", "", None])),
            "metadata": draw(
                st.one_of(
                    st.just({"name": name}),
                    st.just({"name": name, "namespace": "elsewhere"}),
                    st.just({"generateName": name}),
                    st.just({"name": name, "resourceVersion": "abc"}),
                    st.just({"name": name, "labels": {"bad key!": "v"}}),
                    st.just({"name": name, "ownerReferences": [{"uid": 1}]}),
                    st.just({"name": name, "finalizers": "notalist"}),
                    st.just([]),
                    st.just("metadata"),
                )
            ),
        }
        keys = st.sampled_from(
            ["data", "spec", "status", "x", "", "\u00e9", '"', "a.b", "[0]", "~1", "\x1f", "a\r\nb"]
        )
        extra = draw(st.dictionaries(keys, JSON_VALUES, max_size=3))
        obj.update(extra)
        return json.dumps(obj).encode()
    if kind == 4:  # truncated JSON
        text = json.dumps({"metadata": {"name": name}, "data": {"k": "v" * 50}})
        return text[: draw(st.integers(0, len(text) - 1))].encode()
    if kind == 5:  # YAML
        return draw(
            st.sampled_from(
                [
                    b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n",
                    b"apiVersion: v1\nkind: ConfigMap\nmetadata: [\n",
                    b"- a\n- b\n",
                    b"!!python/object/apply:os.system ['true']\n",
                    b"a: &x 1\nb: *y\n",
                    b"---\n---\n",
                    b"\t\tkey: value\n",
                ]
            )
        )
    if kind == 6:  # JSON patch documents
        return json.dumps(
            draw(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "op": st.sampled_from(
                                ["add", "remove", "replace", "move", "copy", "test", "nope"]
                            ),
                            "path": st.sampled_from(
                                [
                                    "/data/a",
                                    "/metadata/name",
                                    "",
                                    "/",
                                    "/~2",
                                    "/a/-/b",
                                    "/metadata/labels/x",
                                    "/spec/containers/99",
                                ]
                            ),
                            "value": JSON_VALUES,
                        }
                    ),
                    max_size=3,
                )
            )
        ).encode()
    if kind == 7:  # deep nesting
        depth = draw(st.integers(100, 20000))
        return b'{"metadata":{"name":"deep"},"data":' + b"[" * depth + b"]" * depth + b"}"
    if kind == 8:  # invalid UTF-8 and BOMs
        return draw(
            st.sampled_from(
                [
                    b"\xef\xbb\xbf{}",
                    b'{"metadata":{"name":"\xff\xfe"}}',
                    b"\x00" * 10,
                    '{"metadata":{"name":"\u00e9"}}'.encode("utf-16"),
                ]
            )
        )
    # big but under the limit
    return json.dumps({"metadata": {"name": "big"}, "data": {"k": "x" * 500_000}}).encode()


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
        "text/plain",
        "application/vnd.kubernetes.protobuf",
        "multipart/form-data; boundary=x",
        "",
        "application/json; charset=utf-16",
        "garbage",
        "application/json;;;",
        "application/cbor",
    ]
)
ACCEPTS = st.sampled_from(
    [
        "application/json",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
        "text/html",
        "*/*",
        "garbage",
        "",
        "application/json;as=Table;v=v9;g=meta.k8s.io",
        "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    ]
)


@settings(
    max_examples=800,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    method=METHODS,
    path=paths(),
    query=queries(),
    body=bodies(),
    content_type=CONTENT_TYPES,
    accept=ACCEPTS,
)
def test_hostile_requests_never_get_5xx(
    target: KubevisorServer,
    method: str,
    path: str,
    query: str,
    body: bytes | None,
    content_type: str,
    accept: str,
) -> None:
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    answer = send(target, method, path + query, body=body, headers=headers)
    check(answer, method, (method, path + query, content_type, accept, (body or b"")[:200]))


@settings(max_examples=60, deadline=None)
@given(path=paths(), method=METHODS)
def test_unauthenticated_requests_get_401(target: KubevisorServer, path: str, method: str) -> None:
    answer = send(target, method, path, auth=False)
    if path in {"/healthz", "/livez", "/readyz", "/version"} and method in {"GET", "HEAD"}:
        return  # public, as in kube-apiserver
    assert answer.status in {401, 403, 404, 405}, (answer.status, method, path)
    check(answer, method, (method, path))


def test_server_still_ready_after_fuzzing(target: KubevisorServer) -> None:
    assert_ready(target)
    # and it still does real work
    answer = send(
        target,
        "POST",
        "/api/v1/namespaces/stable/configmaps",
        body=b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"after-fuzz"},'
        b'"data":{"ok":"yes"}}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 201, answer
    answer = send(target, "GET", "/api/v1/namespaces/stable/configmaps/after-fuzz")
    assert answer.status == 200 and json.loads(answer.body)["data"] == {"ok": "yes"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?watch=0", {200}),
        ("?resourceVersion=abc", {400}),
        ("?limit=-1", {200, 400}),
        ("?limit=abc", {400}),
        ("?timeoutSeconds=abc", {400}),
        ("?labelSelector=a%20in%20(", {400}),
        ("?labelSelector=%21%21%21", {400}),
        ("?fieldSelector=spec.nope%3Dx", {400}),
        ("?fieldSelector=metadata.name", {400}),
        ("?continue=not-a-token", {400, 410}),
        ("?resourceVersionMatch=Bogus&resourceVersion=1", {400}),
        ("?resourceVersionMatch=Exact", {400}),
    ],
)
def test_bad_list_parameters_are_400(
    target: KubevisorServer, query: str, expected: set[int]
) -> None:
    answer = send(target, "GET", "/api/v1/namespaces/stable/configmaps" + query)
    assert answer.status in expected, (answer.status, answer.body[:300])
    check(answer, "GET", query)


def test_oversized_body_is_413(own_target: KubevisorServer) -> None:
    target = own_target
    big = b'{"metadata":{"name":"huge"},"data":{"k":"' + b"x" * (3 * 1024 * 1024 + 10) + b'"}}'
    answer = send(
        target,
        "POST",
        "/api/v1/namespaces/fuzz/configmaps",
        body=big,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 413, (answer.status, answer.body[:300])
    check(answer, "POST", "oversized")
    assert json.loads(answer.body)["reason"] == "RequestEntityTooLarge"
    assert_ready(target)


def test_oversized_chunked_body_is_rejected(own_target: KubevisorServer) -> None:
    target = own_target

    def chunks() -> Iterator[bytes]:
        yield b'{"metadata":{"name":"huge"},"data":{"k":"'
        for _ in range(64):
            yield b"y" * 65536
        yield b'"}}'

    conn = http.client.HTTPSConnection(
        "127.0.0.1", target.port, context=target.ssl_context(), timeout=20
    )
    try:
        conn.request(
            "POST",
            "/api/v1/namespaces/fuzz/configmaps",
            body=chunks(),
            headers={"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        status = response.status
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the server may close the connection once the limit is hit
    finally:
        conn.close()
    assert status == 413
    assert_ready(target)


def test_wrong_kind_and_mismatched_names(target: KubevisorServer) -> None:
    cases = [
        (
            "POST",
            "/api/v1/namespaces/stable/configmaps",
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}},
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/stable/configmaps",
            {"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "k"}},
            400,
        ),
        (
            "PUT",
            "/api/v1/namespaces/stable/configmaps/existing",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}},
            400,
        ),
        (
            "POST",
            "/api/v1/namespaces/stable/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "k", "namespace": "fuzz"},
            },
            400,
        ),
        ("POST", "/api/v1/namespaces/stable/configmaps", [1, 2, 3], 400),
        ("POST", "/api/v1/namespaces/stable/configmaps", "just a string", 400),
    ]
    for method, path, body, code in cases:
        answer = send(
            target,
            method,
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status == code, (method, path, body, answer.status, answer.body[:300])
        check(answer, method, body)


def alias_bomb(levels: int = 9) -> list[str]:
    """YAML lines defining anchors a..: each a list of nine references to
    the previous one (9**levels strings once expanded)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return lines


@pytest.mark.parametrize("validation", ["Strict", "Warn", "Ignore"])
def test_yaml_alias_bomb_is_refused_quickly(own_target: KubevisorServer, validation: str) -> None:
    """A billion-laughs document (kube-apiserver: 400 "excessive aliasing",
    in microseconds) must neither cost the server seconds of CPU nor be
    expanded into a stored object. Eight levels: 9**8 = 43 million strings."""
    target = own_target
    levels = 8
    last = chr(ord("a") + levels - 1)
    bomb = "\n".join(
        [
            "apiVersion: v1",
            "kind: Pod",
            "metadata:",
            "  name: bomb",
            "bombs:",
            *("  " + line for line in alias_bomb(levels)),
            "spec:",
            "  containers:",
            "  - name: c",
            "    image: x",
            f"    args: *{last}",
            f"    command: [*{last}, *{last}]",
        ]
    ).encode()
    started = time.monotonic()
    answer = send(
        target,
        "POST",
        f"/api/v1/namespaces/stable/pods?fieldValidation={validation}",
        body=bomb,
        headers={"Content-Type": "application/yaml"},
    )
    elapsed = time.monotonic() - started
    assert answer.status in {400, 413, 422}, (answer.status, answer.body[:300])
    check(answer, "POST", "yaml bomb")
    assert elapsed < 1.0, f"a 1 KB alias bomb took {elapsed:.1f} s"
    assert_ready(target)

    configmap = "\n".join(
        [
            "apiVersion: v1",
            "kind: ConfigMap",
            "metadata:",
            "  name: bomb",
            *alias_bomb(levels),
            f"data: *{last}",
        ]
    ).encode()
    answer = send(
        target,
        "POST",
        "/api/v1/namespaces/stable/configmaps",
        body=configmap,
        headers={"Content-Type": "application/yaml"},
    )
    assert answer.status in {400, 413, 422}, (answer.status, answer.body[:300])
    assert_ready(target)


def test_unknown_http_methods_get_a_status(own_target: KubevisorServer) -> None:
    """Go's HTTP server (kube-apiserver) takes any token as a method and
    answers 405 MethodNotAllowed with a Status. Methods httptools knows get
    that 405 here too; a token its parser refuses (BREW) gets a 400 Status
    BadRequest, still a Status and never a plain-text page."""
    for method in ("TRACE", "PROPFIND", "BREW", "CONNECT"):
        for path in (
            "/api/v1/namespaces/stable/configmaps",
            "/api/v1/namespaces/stable/configmaps/existing",
        ):
            answer = send(own_target, method, path)
            expected = 400 if method == "BREW" else 405
            assert answer.status == expected, (method, path, answer.status)
            check(answer, method, (method, path))
    assert_ready(own_target)


def test_slow_and_broken_connections_do_not_hurt(own_target: KubevisorServer) -> None:
    target = own_target
    context = target.ssl_context()
    # half a request, then hang up; a TLS handshake abandoned; plain HTTP on the TLS port
    for payload in (
        b"POST /api/v1/namespaces/fuzz/configmaps HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        b'\r\n{"meta',
        b"GARBAGE\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", target.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(payload)
    with socket.create_connection(("127.0.0.1", target.port), timeout=5) as raw:
        raw.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            raw.recv(100)
        except (ConnectionResetError, TimeoutError, ssl.SSLError):
            pass
    with socket.create_connection(("127.0.0.1", target.port), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, then silence
    assert_ready(target)


WEIRD_KEYS = ["", "\x1f", "a\r\nX-Injected: 1", "\u00e9t\u00e9", '"quoted"', "a.b", "[0]"]


@pytest.mark.parametrize("key", WEIRD_KEYS)
@pytest.mark.parametrize("validation", ["Strict", "Warn", "Ignore"])
def test_weird_field_names(target: KubevisorServer, key: str, validation: str) -> None:
    """Unknown fields with odd names: 400 (Strict) or a warning (Warn) that
    quotes the name safely, never a 5xx, a dropped connection or a header
    injection."""
    body = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "weird"},
            key: 1,
            "data": {key or "k": "v"},
        }
    )
    for method, path in (
        ("POST", "/api/v1/namespaces/stable/configmaps"),
        ("PUT", "/api/v1/namespaces/stable/configmaps/weird"),
    ):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", target.port, context=target.ssl_context(), timeout=20
        )
        try:
            conn.request(method, f"{path}?fieldValidation={validation}&dryRun=All",
                         body=body.encode(),
                         headers={"Authorization": f"Bearer {target.token}",
                                  "Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            answer = Answer(response.status, response.getheader("Content-Type") or "",
                            response.read())  # fmt: skip
            assert response.getheader("X-Injected") is None
        finally:
            conn.close()
        assert answer.status < 500, (method, answer.status, answer.body[:300])
        check(answer, method, (method, key, validation))
    assert_ready(target)
