"""The OpenAPI v3 index and group-version documents: shape, the PATCH
fieldValidation parameter kubectl looks for, closed component sets,
custom resources, caching by registry state."""

from __future__ import annotations

import re
from typing import Any

from kubevisor.api import openapi
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.crd import resource_types
from tests.api.examples import crd_example

REF = re.compile(r'"\$ref":\s*"#/components/schemas/([^"]+)"')


def _refs(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref.removeprefix("#/components/schemas/"))
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)
    return out


def test_index_lists_every_group_version_with_a_hash() -> None:
    index = openapi.openapi_v3_index(builtin_registry())
    assert set(index["paths"]) == {
        "api/v1", "apis/apps/v1", "apis/coordination.k8s.io/v1", "apis/apiextensions.k8s.io/v1",
        "apis/rbac.authorization.k8s.io/v1", "apis/node.k8s.io/v1", "apis/storage.k8s.io/v1",
        "apis/discovery.k8s.io/v1", "apis/certificates.k8s.io/v1",
        "apis/batch/v1",
        *(f"apis/vmoperator.vmware.com/{v}" for v in ("v1alpha3", "v1alpha4", "v1alpha5", "v1alpha6"))}
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert re.fullmatch(r"/openapi/v3/apis/apps/v1\?hash=[0-9A-F]{128}", url)


def test_core_v1_patch_has_field_validation() -> None:
    doc = openapi.openapi_v3_document(builtin_registry(), "", "v1")
    assert doc is not None
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    names = {(p["name"], p["in"]) for p in patch["parameters"]}
    assert ("fieldValidation", "query") in names
    assert ("fieldManager", "query") in names and ("force", "query") in names
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Pod",
                                                        "version": "v1"}
    assert patch["x-kubernetes-action"] == "patch"
    assert patch["operationId"] == "patchCoreV1NamespacedPod"
    assert set(patch["requestBody"]["content"]) == {
        "application/apply-patch+yaml", "application/json-patch+json",
        "application/merge-patch+json", "application/strategic-merge-patch+json"}
    status = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]
    assert "fieldValidation" in {p["name"] for p in status["parameters"]}
    # Every PATCH in every document carries it (QueryParamVerifierV3 takes the first match).
    for group, versions in builtin_registry().group_versions().items():
        for version in versions:
            gv_doc = openapi.openapi_v3_document(builtin_registry(), group, version)
            assert gv_doc is not None
            for item in gv_doc["paths"].values():
                if "patch" in item:
                    assert "fieldValidation" in {p["name"] for p in item["patch"]["parameters"]}


def test_paths_follow_scope_verbs_and_subresources() -> None:
    doc = openapi.openapi_v3_document(builtin_registry(), "apps", "v1")
    assert doc is not None
    paths = doc["paths"]
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["put"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "kind": "Scale", "version": "v1"}
    assert "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}/scale" not in paths
    assert paths["/apis/apps/v1/deployments"]["get"]["operationId"] == \
        "listAppsV1DeploymentForAllNamespaces"
    core = openapi.openapi_v3_document(builtin_registry(), "", "v1")
    assert core is not None
    assert "/api/v1/nodes/{name}" in core["paths"]
    assert "/api/v1/namespaces/{namespace}/nodes" not in core["paths"]
    assert "delete" not in core["paths"]["/api/v1/namespaces"]  # no deletecollection
    assert "/api/v1/namespaces/{namespace}/configmaps/{name}/status" not in core["paths"]


def test_components_are_closed_and_carry_gvks() -> None:
    doc = openapi.openapi_v3_document(builtin_registry(), "", "v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    assert _refs(doc, set()) <= set(schemas)
    pod = schemas["io.k8s.api.core.v1.Pod"]
    assert pod["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod",
                                                       "version": "v1"}]
    assert pod["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "io.k8s.api.core.v1.PodList" in schemas
    assert "io.k8s.api.apps.v1.Deployment" not in schemas


def test_custom_resource_document_and_cache() -> None:
    registry = builtin_registry()
    first = openapi.openapi_v3_index(registry)
    assert openapi.openapi_v3_document(registry, "stable.example.com", "v1") is None
    for rt in resource_types(crd_example()):
        registry.add(rt)
    index = openapi.openapi_v3_index(registry)
    assert "apis/stable.example.com/v1" in index["paths"]
    assert "apis/stable.example.com/v1beta1" in index["paths"]
    assert index["paths"]["api/v1"] == first["paths"]["api/v1"]
    doc = openapi.openapi_v3_document(registry, "stable.example.com", "v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    crontab = schemas["com.example.stable.v1.CronTab"]
    assert crontab["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]
    assert crontab["properties"]["spec"]["properties"]["cronSpec"]["type"] == "string"
    assert set(crontab["properties"]) >= {"apiVersion", "kind", "metadata", "spec", "status"}
    assert "com.example.stable.v1.CronTabList" in schemas
    assert _refs(doc, set()) <= set(schemas)
    assert "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale" in \
        doc["paths"]
    # The CRD's own schema is not modified by publishing it.
    assert "apiVersion" not in crd_example()["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"]["properties"]
    # Cached while the registry is unchanged; rebuilt (new hash) when the CRD changes.
    assert openapi.openapi_v3_document(registry, "stable.example.com", "v1") is doc
    changed = crd_example()
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["extra2"] = {"type": "string"}
    registry.add(resource_types(changed)[0])
    again = openapi.openapi_v3_index(registry)
    assert again["paths"]["apis/stable.example.com/v1"] != \
        index["paths"]["apis/stable.example.com/v1"]
    registry.remove("stable.example.com", "v1", "crontabs")
    registry.remove("stable.example.com", "v1beta1", "crontabs")
    assert openapi.openapi_v3_index(registry) == first


def test_document_bytes_match_document() -> None:
    import orjson

    registry = builtin_registry()
    found = openapi.openapi_v3_document_bytes(registry, "storage.k8s.io", "v1")
    assert found is not None
    raw, digest = found
    assert orjson.loads(raw) == openapi.openapi_v3_document(registry, "storage.k8s.io", "v1")
    assert openapi.openapi_v3_index(registry)["paths"]["apis/storage.k8s.io/v1"][
        "serverRelativeURL"].endswith(digest)
    assert openapi.openapi_v3_document_bytes(registry, "nope.io", "v1") is None


def test_openapi_v2_protobuf() -> None:
    from kubevisor.api import openapiv2

    registry = builtin_registry()
    raw = openapiv2.openapi_v2_protobuf(registry)
    assert raw.startswith(b"\x0a\x032.0")  # field 1 (swagger), length 3, "2.0"
    assert b'group: ""\nkind: Namespace\nversion: v1\n' in raw
    assert b"/api/v1/namespaces/{namespace}/pods/{name}" in raw
    assert b"fieldValidation" in raw
    assert openapiv2.openapi_v2_protobuf(registry) is raw
    for rt in resource_types(crd_example()):
        registry.add(rt)
    assert b"kind: CronTab" in openapiv2.openapi_v2_protobuf(registry)
