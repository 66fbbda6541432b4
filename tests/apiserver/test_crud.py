"""Create/get/list/update/delete against the real app and store."""

from __future__ import annotations

import httpx

from tests.apiserver.conftest import make_ns

CM = "/api/v1/namespaces/ns1/configmaps"


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_health_and_version_need_no_token(api: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        r = await api.get(path, headers={"Authorization": ""})
        assert r.status_code == 200 and r.text == "ok"
    r = await api.get("/version", headers={"Authorization": ""})
    assert r.json()["major"] == "1"


async def test_unauthorized_without_token(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.json()["reason"] == "Unauthorized"


async def test_create_get_list_update_delete(api: httpx.AsyncClient) -> None:
    ns = await make_ns(api, "ns1")
    assert ns["status"]["phase"] == "Active"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    r = await api.post(CM, json=cm("a", k="v"))
    assert r.status_code == 201
    created = r.json()
    meta = created["metadata"]
    assert meta["namespace"] == "ns1" and len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    r = await api.get(f"{CM}/a")
    assert r.json() == created
    r = await api.post(CM, json=cm("a"))
    assert r.status_code == 409
    assert r.json()["message"] == 'configmaps "a" already exists'
    # update with a stale resourceVersion conflicts; a fresh one succeeds
    body = {**created, "data": {"k": "w"}}
    r = await api.put(f"{CM}/a", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["resourceVersion"] != meta["resourceVersion"]
    r = await api.put(f"{CM}/a", json=body)
    assert r.status_code == 409
    assert r.json()["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again")
    # PUT without resourceVersion is unconditional
    body["metadata"].pop("resourceVersion")
    body["data"] = {"k": "x"}
    r = await api.put(f"{CM}/a", json=body)
    assert r.status_code == 200 and r.json()["data"] == {"k": "x"}
    r = await api.get(CM)
    listed = r.json()
    assert listed["kind"] == "ConfigMapList" and [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    r = await api.delete(f"{CM}/a")
    assert r.status_code == 200 and r.json()["status"] == "Success"
    r = await api.get(f"{CM}/a")
    assert r.status_code == 404
    assert r.json()["message"] == 'configmaps "a" not found'


async def test_namespace_must_exist(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/namespaces/nope/configmaps", json=cm("a"))
    assert r.status_code == 404
    assert r.json()["message"] == 'namespaces "nope" not found'


async def test_generate_name(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"generateName": "gen-"}})
    name = r.json()["metadata"]["name"]
    assert r.status_code == 201 and name.startswith("gen-") and len(name) == 9


async def test_dry_run_writes_nothing(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(CM + "?dryRun=All", json=cm("a"))
    assert r.status_code == 201
    assert (await api.get(f"{CM}/a")).status_code == 404


async def test_garbage_is_4xx(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(CM, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["kind"] == "Status"
    r = await api.post(CM, json=[1, 2])
    assert r.status_code == 400
    r = await api.post(CM, json={"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    assert r.status_code == 400
    r = await api.get("/api/v1/nothings")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    r = await api.get("/zzz/../x")
    assert r.status_code == 404
    r = await api.put(CM, json=cm("a"))
    assert r.status_code == 405 and r.json()["reason"] == "MethodNotAllowed"
    r = await api.post(CM, content=b"x" * (3 * 1024 * 1024 + 1),
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 413


async def test_strict_field_validation(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    body = {**cm("a"), "spec": {"foo": 1}}
    r = await api.post(CM + "?fieldValidation=Strict", json=body)
    assert r.status_code == 400
    assert r.json()["message"] == 'strict decoding error: unknown field "spec"'
    r = await api.post(CM + "?fieldValidation=Warn", json=body)
    assert r.status_code == 201
    assert 'unknown field \\"spec\\"' in r.headers["warning"]
    assert "spec" not in r.json()


async def test_invalid_is_422_with_causes(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c"}]}}
    r = await api.post("/api/v1/namespaces/ns1/pods", json=pod)
    assert r.status_code == 422, r.text
    status = r.json()
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('Pod "p" is invalid: ')
    assert any(c["field"] == "spec.containers[0].image" for c in status["details"]["causes"])


async def test_openapi_v2_is_an_empty_document(api: httpx.AsyncClient) -> None:
    r = await api.get("/openapi/v2", headers={
        "Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert r.status_code == 200 and r.content.startswith(b"\n\x032.0\x12")
    assert (await api.get("/openapi/v2")).json()["definitions"] == {}
    index = (await api.get("/openapi/v3")).json()
    url = index["paths"]["api/v1"]["serverRelativeURL"]
    r = await api.get(url)
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
    assert "io.k8s.api.core.v1.Pod" in r.json()["components"]["schemas"]


async def test_bad_list_timeout_is_400(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/configmaps", params={"timeoutSeconds": "abc"})
    assert r.status_code == 400


async def test_list_resource_version_semantics(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    first = (await api.post(CM, json=cm("a"))).json()["metadata"]["resourceVersion"]
    await api.post(CM, json=cm("b"))
    r = await api.get(CM, params={"resourceVersion": first, "resourceVersionMatch": "Exact"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["a"]
    assert r.json()["metadata"]["resourceVersion"] == first
    r = await api.get(CM, params={"resourceVersion": first})
    assert len(r.json()["items"]) == 2
    r = await api.get(CM, params={"resourceVersion": "999999"})
    assert r.status_code == 504 and r.json()["reason"] == "Timeout"
    r = await api.get(CM, params={"resourceVersionMatch": "Exact"})
    assert r.status_code == 400


async def test_yaml_json_cannot_carry_is_400(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    body = b'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\ndata: {k: "\\uda66"}\n'
    r = await api.post(CM, content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    r = await api.request("DELETE", CM, content=b'propagationPolicy: "\\uda66"',
                          headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400


async def test_yaml_alias_bomb_is_400_at_once(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\nbomb:\n" + "\n".join(
        "  " + line for line in lines)
    r = await api.post(CM, content=body.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400 and "excessive aliasing" in r.json()["message"]


async def test_unknown_field_names_are_quoted(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(CM + "?fieldValidation=Warn", json={**cm("w"), "a\r\nX-Injected: 1": 1})
    assert r.status_code == 201
    assert "x-injected" not in r.headers
    assert r.headers["warning"] == '299 - "unknown field \\"a\\\\r\\\\nX-Injected: 1\\""'
    r = await api.post(CM + "?fieldValidation=Strict", json={**cm("s"), "\x1f": 1})
    assert r.json()["message"] == 'strict decoding error: unknown field "\\x1f"'


async def test_aggregated_discovery(api: httpx.AsyncClient) -> None:
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
              "application/json")
    r = await api.get("/apis", headers={"Accept": accept})
    assert r.headers["content-type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    doc = r.json()
    assert doc["kind"] == "APIGroupDiscoveryList" and doc["apiVersion"] == "apidiscovery.k8s.io/v2"
    apps = next(i for i in doc["items"] if i["metadata"].get("name") == "apps")
    deploy = next(res for res in apps["versions"][0]["resources"]
                  if res["resource"] == "deployments")
    assert deploy["scope"] == "Namespaced" and deploy["responseKind"]["kind"] == "Deployment"
    assert {s["subresource"] for s in deploy["subresources"]} == {"scale", "status"}
    core = (await api.get("/api", headers={"Accept": accept})).json()
    assert [v["version"] for v in core["items"][0]["versions"]] == ["v1"]
    assert "name" not in core["items"][0]["metadata"]
    legacy = await api.get("/apis", headers={"Accept": "application/json"})
    assert legacy.json()["kind"] == "APIGroupList"
