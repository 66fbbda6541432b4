"""CustomResourceDefinitions: kube-apiserver's validation rules, the kinds a
CRD defines, and the status of an accepted CRD."""

from __future__ import annotations

from typing import Any

from kubevisor.api import validation
from kubevisor.api.builtin import builtin_registry
from kubevisor.api.crd import accepted_status, resource_types, validate_crd
from kubevisor.api.kinds import ScaleSubresource
from tests.api.examples import crd_example


def _messages(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_crd(obj)]


def test_valid_crd() -> None:
    assert validate_crd(crd_example()) == []
    rt = builtin_registry().by_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
    assert rt is not None
    assert validation.validate(rt, crd_example()) == []


def test_name_group_scope() -> None:
    crd = crd_example()
    crd["metadata"]["name"] = "crontabs.example.com"
    crd["spec"]["scope"] = "Global"
    assert _messages(crd) == [
        'metadata.name: Invalid value: "crontabs.example.com": must be '
        'spec.names.plural+"."+spec.group',
        'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
    ]
    crd = crd_example()
    crd["spec"]["group"] = "nodots"
    crd["metadata"]["name"] = "crontabs.nodots"
    assert _messages(crd) == ['spec.group: Invalid value: "nodots": should be a domain with at '
                              "least one dot"]


def test_names() -> None:
    crd = crd_example()
    crd["spec"]["names"].update(plural="CronTabs", kind="")
    crd["metadata"]["name"] = "CronTabs.stable.example.com"
    text = _messages(crd)
    assert any(t.startswith('spec.names.plural: Invalid value: "CronTabs": a DNS-1035 label')
               for t in text)
    assert "spec.names.kind: Required value" in text


def test_versions() -> None:
    crd = crd_example()
    for v in crd["spec"]["versions"]:
        v["storage"] = True
    assert _messages(crd) == [
        "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: "
        "must have exactly one version marked as storage version"]
    crd = crd_example()
    crd["spec"]["versions"][1]["name"] = "v1"
    assert 'spec.versions[1].name: Duplicate value: "v1"' in _messages(crd)
    crd = crd_example()
    del crd["spec"]["versions"][0]["schema"]
    assert "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required" in \
        _messages(crd)
    crd = crd_example()
    crd["spec"]["versions"] = []
    assert _messages(crd) == [
        "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion(nil): "
        "must have exactly one version marked as storage version"]


def test_structural_schema() -> None:
    crd = crd_example()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del schema["properties"]["spec"]["properties"]["image"]["type"]
    schema["properties"]["spec"]["properties"]["tags"]["items"] = {"maxLength": 3}
    schema["properties"]["metadata"] = {"type": "object", "properties": {"labels": {
        "type": "object"}}}
    base = "spec.versions[0].schema.openAPIV3Schema"
    assert _messages(crd) == [
        f"{base}.properties[spec].properties[image].type: Required value: must not be empty "
        "for specified object fields",
        f"{base}.properties[spec].properties[tags].items.type: Required value: must not be "
        "empty for specified array items",
        f"{base}.properties[metadata]: Forbidden: must not specify anything other than name "
        "and generateName, but metadata is implicitly specified",
    ]
    crd = crd_example()
    spec_props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]
    spec_props["tags"]["uniqueItems"] = True
    spec_props["replicas"]["default"] = "one"
    assert _messages(crd) == [
        f'{base}.properties[spec].properties[replicas].default: Invalid value: "string": '
        f"{base}.properties[spec].properties[replicas].default in body must be of type "
        'integer: "string"',
        f"{base}.properties[spec].properties[tags].uniqueItems: Forbidden: uniqueItems cannot "
        "be set to true since the runtime complexity becomes quadratic",
    ]
    crd = crd_example()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {"properties": {}}
    assert _messages(crd) == [f"{base}.type: Required value: must not be empty at the root"]


def test_printer_columns_and_scale() -> None:
    crd = crd_example()
    version = crd["spec"]["versions"][0]
    version["additionalPrinterColumns"].append({"name": "Bad", "type": "map"})
    version["subresources"]["scale"]["specReplicasPath"] = "spec.replicas"
    assert _messages(crd) == [
        'spec.versions[0].subresources.scale.specReplicasPath: Invalid value: "spec.replicas": '
        "should be a json path under .spec or .status",
        "spec.versions[0].additionalPrinterColumns[5].jsonPath: Required value",
        'spec.versions[0].additionalPrinterColumns[5].type: Unsupported value: "map": '
        'supported values: "integer", "number", "string", "boolean", "date"',
    ]


def test_resource_types() -> None:
    crd = crd_example()
    crd["spec"]["versions"].append({"name": "v0", "served": False, "storage": False,
                                    "schema": {"openAPIV3Schema": {"type": "object"}}})
    v1, v1beta1 = resource_types(crd)
    assert (v1.group, v1.version, v1.kind, v1.plural, v1.singular) == (
        "stable.example.com", "v1", "CronTab", "crontabs", "crontab")
    assert v1.namespaced and v1.custom and v1.storage and v1.has_status
    assert v1.short_names == ("ct",) and v1.categories == ("all",)
    assert v1.scale == ScaleSubresource(".spec.replicas", ".status.replicas", ".status.selector")
    assert v1.schema is crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert v1.schema_name is None
    assert v1.selectable_fields == ("spec.cronSpec",)
    assert not v1beta1.storage and not v1beta1.has_status and v1beta1.scale is None
    crd["spec"]["scope"] = "Cluster"
    assert not resource_types(crd)[0].namespaced


def test_accepted_status() -> None:
    crd = crd_example()
    status = accepted_status(crd, "2026-01-01T12:00:00Z")
    assert status["acceptedNames"]["listKind"] == "CronTabList"
    assert status["acceptedNames"]["shortNames"] == ["ct"]
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        ("NamesAccepted", "True"), ("Established", "True")]
    assert status["storedVersions"] == ["v1"]
    crd["status"] = status
    later = accepted_status(crd, "2026-01-02T00:00:00Z")
    assert later["conditions"][1]["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_protected_groups_need_approval() -> None:
    crd = crd_example()
    crd["spec"]["group"] = "stable.k8s.io"
    crd["metadata"]["name"] = "crontabs.stable.k8s.io"
    assert _messages(crd) == [
        "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups "
        'must have approval annotation "api-approved.kubernetes.io", see '
        "https://github.com/kubernetes/enhancements/pull/1111"]
    crd["metadata"]["annotations"] = {"api-approved.kubernetes.io": "unapproved, testing"}
    assert _messages(crd) == []
