"""Object semantics: finalizers and deletion, namespaces, status/scale
subresources, generation, paging, selectors, Table, CRDs."""

from __future__ import annotations

import httpx

from tests.api.examples import crd_example
from tests.apiserver.conftest import make_ns

CM = "/api/v1/namespaces/ns1/configmaps"
DEP = "/apis/apps/v1/namespaces/ns1/deployments"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def cm(name: str, **meta: object) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}}


def deployment(name: str, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


async def test_finalizers_hold_deletion_until_removed(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post(CM, json=cm("a", finalizers=["example.com/hold"]))
    assert r.status_code == 201
    r = await api.delete(f"{CM}/a")
    assert r.status_code == 200
    obj = (await api.get(f"{CM}/a")).json()
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["deletionGracePeriodSeconds"] == 0
    obj["metadata"]["finalizers"] = ["example.com/hold", "example.com/new"]
    r = await api.put(f"{CM}/a", json=obj)
    assert r.status_code == 422 and "no new finalizers" in r.json()["message"]
    obj["metadata"]["finalizers"] = []
    r = await api.put(f"{CM}/a", json=obj)
    assert r.status_code == 200
    assert (await api.get(f"{CM}/a")).status_code == 404


async def test_update_of_a_pod_in_its_grace_period_keeps_it(api: httpx.AsyncClient) -> None:
    """A pod being deleted gracefully outlives updates (the garbage collector
    orphaning it, a status write): only its node's grace-0 delete removes it."""
    await make_ns(api, "ns1")
    pods = "/api/v1/namespaces/ns1/pods"
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "labels": {"a": "1"}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    assert (await api.post(pods, json=pod)).status_code == 201
    assert (await api.delete(f"{pods}/p")).status_code == 200
    obj = (await api.get(f"{pods}/p")).json()
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["deletionGracePeriodSeconds"] == 30
    obj["metadata"]["labels"] = {"a": "2"}
    r = await api.put(f"{pods}/p", json=obj)
    assert r.status_code == 200
    obj = (await api.get(f"{pods}/p")).json()
    assert obj["metadata"]["labels"] == {"a": "2"}
    obj["status"] = {"phase": "Running"}
    assert (await api.put(f"{pods}/p/status", json=obj)).status_code == 200
    assert (await api.get(f"{pods}/p")).status_code == 200
    assert (await api.delete(f"{pods}/p", params={"gracePeriodSeconds": "0"})).status_code == 200
    assert (await api.get(f"{pods}/p")).status_code == 404


async def test_second_delete_with_a_shorter_grace_shortens_it(api: httpx.AsyncClient) -> None:
    """``kubectl delete --grace-period=1`` of a pod already in its 30 s grace
    moves its deletion earlier; a longer one changes nothing."""
    from kubevisor.api.meta import parse_rfc3339

    await make_ns(api, "ns1")
    pods = "/api/v1/namespaces/ns1/pods"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    assert (await api.post(pods, json=pod)).status_code == 201
    first = (await api.delete(f"{pods}/p")).json()["metadata"]
    assert first["deletionGracePeriodSeconds"] == 30
    longer = (await api.delete(f"{pods}/p", params={"gracePeriodSeconds": "60"})).json()
    assert longer["metadata"]["deletionTimestamp"] == first["deletionTimestamp"]
    assert longer["metadata"]["resourceVersion"] == first["resourceVersion"]
    shorter = (await api.delete(f"{pods}/p", params={"gracePeriodSeconds": "1"})).json()
    meta = shorter["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 1
    assert parse_rfc3339(meta["deletionTimestamp"]) < parse_rfc3339(first["deletionTimestamp"])
    assert (await api.get(f"{pods}/p")).json()["metadata"]["deletionGracePeriodSeconds"] == 1


async def test_propagation_policy_sets_gc_finalizers(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(DEP, json=deployment("fg"))
    await api.post(DEP, json=deployment("or"))
    r = await api.request("DELETE", f"{DEP}/fg", json={"propagationPolicy": "Foreground"})
    assert r.status_code == 200
    assert r.json()["metadata"]["finalizers"] == ["foregroundDeletion"]
    r = await api.delete(f"{DEP}/or", params={"propagationPolicy": "Orphan"})
    assert r.json()["metadata"]["finalizers"] == ["orphan"]
    r = await api.delete(f"{DEP}/nope")
    assert r.status_code == 404


async def test_delete_preconditions(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(CM, json=cm("a"))
    r = await api.request("DELETE", f"{CM}/a", json={"preconditions": {"uid": "other"}})
    assert r.status_code == 409 and "Precondition failed: UID in precondition: other" in r.json()["message"]
    r = await api.delete(f"{CM}/a", params={"dryRun": "All"})
    assert r.status_code == 200
    assert (await api.get(f"{CM}/a")).status_code == 200


async def test_delete_options_of_the_wrong_type_are_a_bad_request(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(CM, json=cm("a"))
    for body, field in (({"apiVersion": None, "dryRun": True}, "dryRun of type []string"),
                        ({"gracePeriodSeconds": "5"}, "gracePeriodSeconds of type int64"),
                        ({"preconditions": {"uid": 7}}, "preconditions of type v1.Preconditions")):
        r = await api.request("DELETE", f"{CM}/a", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["reason"] == "BadRequest" and field in r.json()["message"]
    assert (await api.get(f"{CM}/a")).status_code == 200
    r = await api.request("DELETE", f"{CM}/a", json={"dryRun": None, "gracePeriodSeconds": 0})
    assert r.status_code == 200 and (await api.get(f"{CM}/a")).status_code == 404


async def test_namespace_termination_and_finalize(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.delete("/api/v1/namespaces/ns1")
    assert r.status_code == 200
    ns = r.json()
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    r = await api.post(CM, json=cm("a"))
    assert r.status_code == 403
    assert r.json()["message"] == (
        'configmaps "a" is forbidden: unable to create new content in namespace ns1 because it '
        "is being terminated")
    ns["spec"]["finalizers"] = []
    r = await api.put("/api/v1/namespaces/ns1/finalize", json=ns)
    assert r.status_code == 200, r.text
    assert (await api.get("/api/v1/namespaces/ns1")).status_code == 404


async def test_status_subresource_and_generation(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    dep = (await api.post(DEP, json={**deployment("d"), "status": {"replicas": 9}})).json()
    assert dep["metadata"]["generation"] == 1 and "replicas" not in dep.get("status", {})
    dep["status"] = {"replicas": 2}
    dep["metadata"]["labels"] = {"x": "y"}
    r = await api.put(f"{DEP}/d", json=dep)
    upd = r.json()
    assert upd["metadata"]["generation"] == 1, "metadata-only change keeps generation"
    assert upd.get("status", {}).get("replicas") is None, "main PUT ignores status"
    upd["status"] = {"replicas": 2}
    upd["spec"]["replicas"] = 5
    r = await api.put(f"{DEP}/d/status", json=upd)
    st = r.json()
    assert st["status"]["replicas"] == 2 and st["spec"]["replicas"] == 1
    st["spec"]["replicas"] = 4
    r = await api.put(f"{DEP}/d", json=st)
    assert r.json()["metadata"]["generation"] == 2


async def test_scale_subresource(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(DEP, json=deployment("d", 2))
    scale = (await api.get(f"{DEP}/d/scale")).json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=d"
    scale["spec"]["replicas"] = 7
    r = await api.put(f"{DEP}/d/scale", json=scale)
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 7
    r = await api.patch(f"{DEP}/d/scale", content=b'{"spec":{"replicas":3}}',
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.json()["spec"]["replicas"] == 3
    assert (await api.get(f"{DEP}/d")).json()["spec"]["replicas"] == 3


async def test_paging_and_selectors(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    for i in range(5):
        await api.post(CM, json=cm(f"c{i}", labels={"parity": "even" if i % 2 == 0 else "odd"}))
    r = (await api.get(CM, params={"limit": 2})).json()
    assert [i["metadata"]["name"] for i in r["items"]] == ["c0", "c1"]
    assert r["metadata"]["remainingItemCount"] == 3
    names = [i["metadata"]["name"] for i in r["items"]]
    token = r["metadata"]["continue"]
    await api.post(CM, json=cm("c9"))  # not seen: the pages read at the first revision
    while token:
        r = (await api.get(CM, params={"limit": 2, "continue": token})).json()
        names += [i["metadata"]["name"] for i in r["items"]]
        token = r["metadata"].get("continue")
    assert names == ["c0", "c1", "c2", "c3", "c4"]
    r = (await api.get(CM, params={"labelSelector": "parity=even", "limit": 2})).json()
    assert [i["metadata"]["name"] for i in r["items"]] == ["c0", "c2"]
    r = (await api.get(CM, params={"labelSelector": "parity=even", "limit": 2,
                                   "continue": r["metadata"]["continue"]})).json()
    assert [i["metadata"]["name"] for i in r["items"]] == ["c4"]
    r = (await api.get("/api/v1/configmaps", params={"fieldSelector": "metadata.name=c3"})).json()
    assert [i["metadata"]["name"] for i in r["items"]] == ["c3"]
    r = await api.get(CM, params={"fieldSelector": "spec.nope=1"})
    assert r.status_code == 400 and r.json()["message"] == "field label not supported: spec.nope"
    r = await api.request("DELETE", CM, params={"labelSelector": "parity=odd"})
    assert r.status_code == 200
    left = (await api.get(CM)).json()["items"]
    assert sorted(i["metadata"]["name"] for i in left) == ["c0", "c2", "c4", "c9"]


async def test_table_output(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(DEP, json=deployment("d", 2))
    r = await api.get(DEP, headers={"Accept": TABLE})
    table = r.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[0] == "Name" and "Age" in names
    row = table["rows"][0]
    assert row["cells"][0] == "d" and row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "d"
    wide = [c for c in table["columnDefinitions"] if c["priority"] == 1]
    assert wide, "deployments have -o wide columns"
    r = await api.get(f"{DEP}/d", headers={"Accept": TABLE}, params={"includeObject": "None"})
    assert "object" not in r.json()["rows"][0]
    r = await api.get(DEP, headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert r.status_code == 406


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                       "shortNames": ["wd"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}},
                           "additionalPrinterColumns": [
                               {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object",
                                        "properties": {"size": {"type": "integer"}}},
                               "status": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": True}}}}}]}}
WIDGETS = "/apis/example.com/v1/namespaces/ns1/widgets"


async def test_crd_serves_kind_at_once(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    r = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD)
    assert r.status_code == 201, r.text
    conds = {c["type"]: c["status"] for c in r.json()["status"]["conditions"]}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    disc = (await api.get("/apis/example.com/v1")).json()
    assert {res["name"] for res in disc["resources"]} == {"widgets", "widgets/status"}
    assert "example.com" in {g["name"] for g in (await api.get("/apis")).json()["groups"]}
    w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
         "spec": {"size": 3}}
    r = await api.post(WIDGETS, json=w)
    assert r.status_code == 201, r.text
    assert r.json()["metadata"]["generation"] == 1
    bad = {**w, "metadata": {"name": "bad"}, "spec": {"size": "big"}}
    r = await api.post(WIDGETS, json=bad)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "spec.size"
    r = await api.patch(f"{WIDGETS}/w", content=b'{"spec":{"size":4}}',
                        headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status_code == 415
    r = await api.patch(f"{WIDGETS}/w", content=b'{"spec":{"size":4}}',
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.json()["spec"]["size"] == 4 and r.json()["metadata"]["generation"] == 2
    table = (await api.get(WIDGETS, headers={"Accept": TABLE})).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size"]
    assert table["rows"][0]["cells"] == ["w", 4]
    r = await api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert r.status_code == 200
    assert (await api.get(WIDGETS)).status_code == 404
    await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD)
    assert (await api.get(WIDGETS)).json()["items"] == [], "objects went with their CRD"


async def test_crd_schema_declaring_type_meta_keeps_metadata(api: httpx.AsyncClient) -> None:
    """controller-gen writes apiVersion, kind and ``metadata: {type: object}``
    into every CRD's root schema; metadata is still checked as ObjectMeta."""
    await make_ns(api, "ns1")
    version = CRD["spec"]["versions"][0]
    root = version["schema"]["openAPIV3Schema"]
    schema = {**root, "properties": {**root["properties"], "apiVersion": {"type": "string"},
                                      "kind": {"type": "string"},
                                      "metadata": {"type": "object"}}}
    crd = {**CRD, "spec": {**CRD["spec"], "versions": [
        {**version, "schema": {"openAPIV3Schema": schema}}]}}
    r = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert r.status_code == 201, r.text
    w = {"apiVersion": "example.com/v1", "kind": "Widget",
         "metadata": {"name": "w", "labels": {"a": "b"}}, "spec": {"size": 1}}
    for mode in ("Strict", "Warn", "Ignore"):
        r = await api.post(WIDGETS, json={**w, "metadata": {**w["metadata"], "name": mode.lower()}},
                           params={"fieldValidation": mode})
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["labels"] == {"a": "b"} and "warning" not in r.headers
    r = await api.post(WIDGETS, json={**w, "metadata": {"name": "x", "bogus": 1}},
                       params={"fieldValidation": "Strict"})
    assert r.status_code == 400
    assert r.json()["message"] == 'strict decoding error: unknown field "metadata.bogus"'


async def test_update_leaving_out_defaulted_fields_changes_nothing(api: httpx.AsyncClient) -> None:
    """Defaults are filled in before the comparison, as kube-apiserver
    decodes with defaulting: re-sending a manifest without the defaulted
    field neither bumps the generation nor writes."""
    await make_ns(api, "ns1")
    crd = crd_example()
    r = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert r.status_code == 201, r.text
    path = "/apis/stable.example.com/v1/namespaces/ns1/crontabs"
    body = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "c"}, "spec": {"cronSpec": "* * * * */5"}}
    created = (await api.post(path, json=body)).json()
    assert created["spec"]["replicas"] == 1 and created["metadata"]["generation"] == 1
    again = {**body, "metadata": {**body["metadata"],
                                  "resourceVersion": created["metadata"]["resourceVersion"]}}
    r = await api.put(f"{path}/c", json=again)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["generation"] == 1
    assert r.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = {**again, "spec": {"cronSpec": "* * * * */6"}}
    r = await api.put(f"{path}/c", json=changed)
    assert r.json()["metadata"]["generation"] == 2


async def test_crd_versions_share_objects(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    crd = {**CRD, "spec": {**CRD["spec"], "versions": [
        {**CRD["spec"]["versions"][0], "name": "v1beta1", "storage": False},
        CRD["spec"]["versions"][0]]}}
    r = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert r.status_code == 201, r.text
    w = {"apiVersion": "example.com/v1beta1", "kind": "Widget", "metadata": {"name": "w"},
         "spec": {"size": 1}}
    r = await api.post("/apis/example.com/v1beta1/namespaces/ns1/widgets", json=w)
    assert r.status_code == 201, r.text
    got = (await api.get(f"{WIDGETS}/w")).json()
    assert got["apiVersion"] == "example.com/v1" and got["spec"]["size"] == 1
    items = (await api.get("/apis/example.com/v1beta1/namespaces/ns1/widgets")).json()["items"]
    assert [i["apiVersion"] for i in items] == ["example.com/v1beta1"]
    # written through both versions, so managedFields name both: served as asked
    r = await api.post(WIDGETS, json={**w, "apiVersion": "example.com/v1",
                                      "metadata": {"name": "w2"}})
    assert r.status_code == 201, r.text
    r = await api.patch("/apis/example.com/v1beta1/namespaces/ns1/widgets/w2",
                        content=b'{"metadata":{"labels":{"x":"y"}}}',
                        headers={"Content-Type": "application/merge-patch+json"},
                        params={"fieldManager": "other"})
    assert r.status_code == 200, r.text
    for version in ("v1", "v1beta1"):
        one = (await api.get(f"/apis/example.com/{version}/namespaces/ns1/widgets/w2")).json()
        assert one["apiVersion"] == f"example.com/{version}"
        assert {m["apiVersion"] for m in one["metadata"]["managedFields"]} == {
            "example.com/v1", "example.com/v1beta1"}
    versions = [v["version"] for v in (await api.get("/apis/example.com")).json()["versions"]]
    assert versions == ["v1", "v1beta1"], "preferred version first"


def test_version_priority() -> None:
    from kubevisor.apiserver.discovery import version_priority

    order = ["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v2alpha3", "v10"]
    assert sorted(order, key=version_priority) == [
        "v10", "v2", "v1", "v1beta2", "v1beta1", "v2alpha3", "v1alpha1", "foo"]


async def test_partial_object_metadata(api: httpx.AsyncClient) -> None:
    await make_ns(api, "ns1")
    await api.post(CM, json={**cm("a", labels={"k": "v"}), "data": {"x": "y"}})
    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
    r = (await api.get(CM, headers={"Accept": accept})).json()
    assert r["kind"] == "PartialObjectMetadataList"
    assert r["items"][0] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": r["items"][0]["metadata"]}
    assert r["items"][0]["metadata"]["labels"] == {"k": "v"}
    accept = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
    r = (await api.get(f"{CM}/a", headers={"Accept": accept})).json()
    assert r["kind"] == "PartialObjectMetadata" and "data" not in r


async def test_numbers_beyond_int64_are_a_bad_request(api: httpx.AsyncClient) -> None:
    """kube-apiserver reads limit, resourceVersion and gracePeriodSeconds as
    int64: a larger number is a 400, never an overflow deeper down."""
    await make_ns(api, "ns1")
    huge = str(2**63)
    for params in ({"limit": huge}, {"resourceVersion": huge},
                   {"resourceVersion": huge, "resourceVersionMatch": "Exact"},
                   {"watch": "true", "resourceVersion": huge}):
        r = await api.get(CM, params=params)
        assert r.status_code == 400 and r.json()["reason"] == "BadRequest", (params, r.text)
    assert (await api.get(CM, params={"limit": str(2**63 - 1)})).status_code == 200
    pods = "/api/v1/namespaces/ns1/pods"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}
    assert (await api.post(pods, json=pod)).status_code == 201
    r = await api.delete(f"{pods}/p", params={"gracePeriodSeconds": huge})
    assert r.status_code == 400 and "gracePeriodSeconds" in r.json()["message"], r.text
    r = await api.request("DELETE", f"{pods}/p", json={"gracePeriodSeconds": 2**63})
    assert r.status_code == 400 and "DeleteOptions.gracePeriodSeconds of type int64" in r.text
    r = await api.delete(f"{pods}/p", params={"gracePeriodSeconds": str(2**63 - 1)})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["deletionGracePeriodSeconds"] == 2**63 - 1
    assert r.json()["metadata"]["deletionTimestamp"] == "9999-12-31T23:59:59Z"


async def test_an_unknown_empty_key_in_metadata_is_dropped_not_a_500(api: httpx.AsyncClient) -> None:
    # found by the schemathesis fuzz: the field path "metadata." pruned metadata itself
    r = await api.put("/api/v1/namespaces/default/status", json={"metadata": {"": None}})
    assert r.status_code < 500, r.text
    assert r.json()["kind"] == "Status"
    await make_ns(api, "empty-key")
    r = await api.post("/api/v1/namespaces/empty-key/configmaps",
                       json={"metadata": {"name": "empty-key", "": "x"}, "data": {"a": "b"}})
    assert r.status_code == 201, r.text
    assert "" not in r.json()["metadata"] and r.json()["metadata"]["name"] == "empty-key"
    assert r.headers.get("warning", "").startswith('299 - "unknown field \\"metadata.\\""')
