"""The official ``kubernetes`` Python client against ``kubevisor up``:
typed CoreV1/AppsV1 CRUD with selectors, patches and optimistic
concurrency, the dynamic client over discovery (a CRD's kind included),
and ``watch.Watch().stream`` in order with resume from a resourceVersion."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests.support.server import KubevisorServer, unique

# one worker runs the module: one server per store, shared by its tests
pytestmark = pytest.mark.xdist_group("e2e-python-client")


MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture(scope="module")
def api(server: KubevisorServer) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield api_client
    api_client.close()


def status_of(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    return body  # type: ignore[no-any-return]


def configmap(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> Any:
    return client.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        data=data,
    )


def test_namespaces(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = unique("py-ns")
    created = core.create_namespace(
        client.V1Namespace(
            api_version="v1",
            kind="Namespace",
            metadata=client.V1ObjectMeta(name=name, labels={"suite": "py"}),
        )
    )
    assert created.metadata.name == name and created.metadata.uid
    assert created.status.phase == "Active"
    assert created.spec.finalizers == ["kubernetes"]
    names = [n.metadata.name for n in core.list_namespace(label_selector="suite=py").items]
    assert name in names
    assert "default" in [n.metadata.name for n in core.list_namespace().items]
    core.delete_namespace(name)
    deadline = time.monotonic() + 30
    while True:
        try:
            phase = core.read_namespace(name).status.phase
        except ApiException as exc:
            assert exc.status == 404
            break
        assert phase == "Terminating"
        assert time.monotonic() < deadline, "namespace not deleted"
        time.sleep(0.2)


def test_configmap_crud_and_conflict(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(ns, configmap("cfg", {"a": "1"}, {"app": "py"}))
    assert created.metadata.resource_version.isdigit()
    got = core.read_namespaced_config_map("cfg", ns)
    assert got.data == {"a": "1"} and got.metadata.uid == created.metadata.uid

    with pytest.raises(ApiException) as dup:
        core.create_namespaced_config_map(ns, configmap("cfg", {}))
    assert dup.value.status == 409
    status = status_of(dup.value)
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'configmaps "cfg" already exists'
    assert status["details"] == {"name": "cfg", "kind": "configmaps"}

    patched = core.patch_namespaced_config_map("cfg", ns, {"data": {"b": "2"}}, _content_type=MERGE)
    assert patched.data == {"a": "1", "b": "2"}
    patched = core.patch_namespaced_config_map(
        "cfg", ns, [{"op": "remove", "path": "/data/a"}], _content_type=JSON_PATCH
    )
    assert patched.data == {"b": "2"}
    patched = core.patch_namespaced_config_map(
        "cfg", ns, {"metadata": {"labels": {"tier": "x"}}}, _content_type=STRATEGIC
    )
    assert patched.metadata.labels == {"app": "py", "tier": "x"}

    # replace with the current resourceVersion works, with a stale one is 409
    got = core.read_namespaced_config_map("cfg", ns)
    stale = core.read_namespaced_config_map("cfg", ns)
    got.data = {"c": "3"}
    replaced = core.replace_namespaced_config_map("cfg", ns, got)
    assert int(replaced.metadata.resource_version) > int(got.metadata.resource_version)
    stale.data = {"d": "4"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("cfg", ns, stale)
    assert conflict.value.status == 409
    status = status_of(conflict.value)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on configmaps "cfg": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert core.read_namespaced_config_map("cfg", ns).data == {"c": "3"}

    core.delete_namespaced_config_map("cfg", ns)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cfg", ns)
    assert missing.value.status == 404
    status = status_of(missing.value)
    assert (status["reason"], status["message"]) == ("NotFound", 'configmaps "cfg" not found')


def test_bodies_without_kind_take_it_from_the_url(api: client.ApiClient, ns: str) -> None:
    """kube-apiserver defaults a missing apiVersion/kind from the URL, and
    the typed client's objects often leave them unset."""
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kindless"), data={"a": "b"})
    )
    assert created.kind == "ConfigMap" and created.api_version == "v1"
    assert core.read_namespaced_config_map("kindless", ns).data == {"a": "b"}


def test_list_selectors_and_paging(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for i in range(10):
        labels = {"parity": "even" if i % 2 == 0 else "odd", "i": str(i)}
        core.create_namespaced_config_map(ns, configmap(f"item-{i}", {"i": str(i)}, labels))

    def names(**kwargs: Any) -> list[str]:
        return sorted(c.metadata.name for c in core.list_namespaced_config_map(ns, **kwargs).items)

    assert names(label_selector="parity=even") == [f"item-{i}" for i in (0, 2, 4, 6, 8)]
    assert names(label_selector="parity=odd,i in (1,3,4)") == ["item-1", "item-3"]
    assert names(label_selector="i notin (0,1,2,3,4,5,6,7)") == ["item-8", "item-9"]
    assert names(field_selector="metadata.name=item-7") == ["item-7"]
    assert names(field_selector=f"metadata.namespace={ns}", label_selector="i=0") == ["item-0"]

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"limit": 3}
        if token:
            kwargs["_continue"] = token
        page = core.list_namespaced_config_map(ns, **kwargs)
        pages += 1
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 4
    assert sorted(seen) == sorted(f"item-{i}" for i in range(10))
    assert len(seen) == len(set(seen))

    everywhere = core.list_config_map_for_all_namespaces(label_selector="parity=odd")
    assert {(c.metadata.namespace, c.metadata.name) for c in everywhere.items} >= {
        (ns, f"item-{i}") for i in (1, 3, 5, 7, 9)
    }
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_config_map(ns, label_selector="parity in (")
    assert bad.value.status == 400


def test_pods_with_status_subresource(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    pod = client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="nginx:1.27")],
            node_name="node-a",
        ),
    )
    created = core.create_namespaced_pod(ns, pod)
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    pods = core.list_namespaced_pod(ns, field_selector="spec.nodeName=node-a").items
    assert [p.metadata.name for p in pods] == ["py-pod"]
    assert core.list_namespaced_pod(ns, field_selector="spec.nodeName=node-b").items == []

    core.patch_namespaced_pod_status(
        "py-pod", ns, {"status": {"phase": "Running", "podIP": "10.0.0.7"}}, _content_type=MERGE
    )
    running = core.list_namespaced_pod(ns, field_selector="status.phase=Running").items
    assert [p.status.pod_ip for p in running] == ["10.0.0.7"]
    # status changes through the main resource are ignored
    core.patch_namespaced_pod("py-pod", ns, {"status": {"phase": "Failed"}}, _content_type=MERGE)
    assert core.read_namespaced_pod("py-pod", ns).status.phase == "Running"
    assert core.read_namespaced_pod_status("py-pod", ns).status.pod_ip == "10.0.0.7"

    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod(
            ns,
            client.V1Pod(
                api_version="v1",
                kind="Pod",
                metadata=client.V1ObjectMeta(name="no-image"),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main")]),
            ),
        )
    assert invalid.value.status == 422
    status = status_of(invalid.value)
    assert status["reason"] == "Invalid"
    assert (
        status["message"] == 'Pod "no-image" is invalid: spec.containers[0].image: Required value'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value",
            "field": "spec.containers[0].image",
        }
    ]


def test_deployments(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "py-web"}
    deployment = client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(name="py-web", labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="web", image="nginx:1.27")]
                ),
            ),
        ),
    )
    created = apps.create_namespaced_deployment(ns, deployment)
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"

    scale = apps.read_namespaced_deployment_scale("py-web", ns)
    assert scale.spec.replicas == 2
    apps.patch_namespaced_deployment_scale(
        "py-web", ns, {"spec": {"replicas": 4}}, _content_type=MERGE
    )
    current = apps.read_namespaced_deployment("py-web", ns)
    assert current.spec.replicas == 4
    assert current.metadata.generation == 2

    # read-modify-replace retried on 409, as client-go's RetryOnConflict: the
    # Deployment controller writes status in between
    for _ in range(20):
        current.spec.template.spec.containers[0].image = "nginx:1.28"
        try:
            replaced = apps.replace_namespaced_deployment("py-web", ns, current)
            break
        except client.exceptions.ApiException as exc:
            assert exc.status == 409, exc
            current = apps.read_namespaced_deployment("py-web", ns)
    assert replaced.metadata.generation == 3
    listed = apps.list_deployment_for_all_namespaces(label_selector="app=py-web").items
    assert [(d.metadata.namespace, d.metadata.name) for d in listed] == [(ns, "py-web")]

    applied = apps.patch_namespaced_deployment(
        "py-web",
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "py-web", "annotations": {"by": "apply"}},
        },
        field_manager="py-e2e",
        _content_type="application/apply-patch+yaml",
    )
    # beside the applied annotation only the Deployment controller's own may be there
    annotations = dict(applied.metadata.annotations)
    assert annotations.pop("by") == "apply"
    assert set(annotations) <= {"deployment.kubernetes.io/revision"}, annotations
    assert any(
        m.manager == "py-e2e" and m.operation == "Apply" for m in applied.metadata.managed_fields
    )
    apps.delete_namespaced_deployment("py-web", ns)
    assert apps.list_namespaced_deployment(ns).items == []


def widget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"power": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_dynamic_client_over_discovery(api: client.ApiClient, ns: str, tmp_path: Path) -> None:
    dyn = DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    assert cms.namespaced and cms.name == "configmaps"
    cms.create(
        body={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dyn"},
            "data": {"k": "v"},
        },
        namespace=ns,
    )
    assert cms.get(name="dyn", namespace=ns).data.k == "v"
    cms.patch(name="dyn", namespace=ns, body={"data": {"k": "w"}}, content_type=MERGE)
    assert cms.get(name="dyn", namespace=ns).data.k == "w"
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.name == "deployments" and "deploy" in deployments.short_names

    group = f"{unique('dyn')}.kubevisor.test"
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.create(body=widget_crd(group))
    deadline = time.monotonic() + 30
    while True:
        conditions = (
            crds.get(name=f"gadgets.{group}").to_dict().get("status", {}).get("conditions", [])
        )
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            break
        assert time.monotonic() < deadline, conditions
        time.sleep(0.2)

    fresh = DynamicClient(api, cache_file=str(tmp_path / "discovery2.json"))
    gadgets = fresh.resources.get(api_version=f"{group}/v1", kind="Gadget")
    assert gadgets.name == "gadgets" and gadgets.namespaced
    gadgets.create(
        body={
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1"},
            "spec": {"power": 9000},
        },
        namespace=ns,
    )
    listed = gadgets.get(namespace=ns)
    assert [item.metadata.name for item in listed.items] == ["g1"]
    assert listed.items[0].spec.power == 9000
    gadgets.delete(name="g1", namespace=ns)
    assert gadgets.get(namespace=ns).items == []
    crds.delete(name=f"gadgets.{group}")


def test_watch_stream_in_order_and_resume(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    start_rv = core.list_namespaced_config_map(ns).metadata.resource_version
    names = [f"w-{i:02d}" for i in range(30)]

    def writer() -> None:
        for name in names:
            core.create_namespaced_config_map(ns, configmap(name, {"v": name}))
        for name in names[:10]:
            core.patch_namespaced_config_map(
                name, ns, {"data": {"v": "changed"}}, _content_type=MERGE
            )

    thread = threading.Thread(target=writer)
    thread.start()
    events: list[tuple[str, str, int]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, ns, resource_version=start_rv, timeout_seconds=30
    ):
        obj = event["object"]
        events.append((event["type"], obj.metadata.name, int(obj.metadata.resource_version)))
        if len(events) == 20:
            w.stop()
            break
    resume_rv = str(events[-1][2])
    thread.join(timeout=60)

    # everything after the last event seen arrives, nothing twice
    w2 = watch.Watch()
    for event in w2.stream(
        core.list_namespaced_config_map, ns, resource_version=resume_rv, timeout_seconds=30
    ):
        obj = event["object"]
        events.append((event["type"], obj.metadata.name, int(obj.metadata.resource_version)))
        if len(events) == 40:
            w2.stop()
            break

    revisions = [rv for _, _, rv in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions), events
    assert all(rv > int(start_rv) for rv in revisions)
    assert [(t, n) for t, n, _ in events] == [("ADDED", n) for n in names] + [
        ("MODIFIED", n) for n in names[:10]
    ]


def test_watch_with_selector_and_bookmarks(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, configmap("sel-a", {}, {"pick": "yes"}))
    core.create_namespaced_config_map(ns, configmap("sel-b", {}, {"pick": "no"}))
    core.patch_namespaced_config_map(
        "sel-b", ns, {"metadata": {"labels": {"pick": "yes"}}}, _content_type=MERGE
    )
    core.patch_namespaced_config_map(
        "sel-a", ns, {"metadata": {"labels": {"pick": "no"}}}, _content_type=MERGE
    )
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=rv,
        label_selector="pick=yes",
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        if event["type"] == "BOOKMARK":
            continue
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
            break
    # like the watch cache: leaving the selector is a DELETED, entering it an ADDED
    assert seen == [("ADDED", "sel-a"), ("ADDED", "sel-b"), ("DELETED", "sel-a")], seen


def test_custom_objects_api(api: client.ApiClient, ns: str) -> None:
    group = f"{unique('co')}.kubevisor.test"
    crd = widget_crd(group)
    version = crd["spec"]["versions"][0]
    version["subresources"] = {
        "status": {},
        "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
    }
    props = version["schema"]["openAPIV3Schema"]["properties"]
    props["spec"]["properties"]["replicas"] = {"type": "integer"}
    props["status"] = {"type": "object", "properties": {
        "replicas": {"type": "integer"}, "state": {"type": "string"},
    }}  # fmt: skip
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(crd)
    deadline = time.monotonic() + 30
    while True:
        status = ext.read_custom_resource_definition(f"gadgets.{group}").status
        conditions = {c.type: c.status for c in (status.conditions or [])} if status else {}
        if conditions.get("Established") == "True":
            break
        assert time.monotonic() < deadline, conditions
        time.sleep(0.2)

    custom = client.CustomObjectsApi(api)
    args = (group, "v1", ns, "gadgets")
    body = {"apiVersion": f"{group}/v1", "kind": "Gadget",
            "metadata": {"name": "g", "labels": {"tier": "gold"}},
            "spec": {"power": 1, "replicas": 1}}  # fmt: skip
    created = custom.create_namespaced_custom_object(*args, body)
    assert created["metadata"]["generation"] == 1
    listed = custom.list_namespaced_custom_object(*args, label_selector="tier=gold")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["g"]
    assert custom.list_namespaced_custom_object(*args, label_selector="tier=tin")["items"] == []

    patched = custom.patch_namespaced_custom_object(
        *args, "g", {"spec": {"power": 2}}, _content_type=MERGE
    )
    assert patched["spec"] == {"power": 2, "replicas": 1}
    assert patched["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(
        *args, "g", {"status": {"state": "on", "replicas": 1}}, _content_type=MERGE
    )
    assert status["status"] == {"state": "on", "replicas": 1}
    assert status["metadata"]["generation"] == 2
    scale = custom.get_namespaced_custom_object_scale(*args, "g")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    assert scale["status"]["replicas"] == 1
    custom.patch_namespaced_custom_object_scale(
        *args, "g", {"spec": {"replicas": 3}}, _content_type=MERGE
    )
    current = custom.get_namespaced_custom_object(*args, "g")
    assert current["spec"]["replicas"] == 3

    current["spec"]["power"] = 5
    replaced = custom.replace_namespaced_custom_object(*args, "g", current)
    assert replaced["spec"]["power"] == 5
    with pytest.raises(ApiException) as conflict:
        custom.replace_namespaced_custom_object(*args, "g", current)  # stale resourceVersion
    assert conflict.value.status == 409

    with pytest.raises(ApiException) as invalid:
        custom.create_namespaced_custom_object(
            *args, {**body, "metadata": {"name": "bad"}, "spec": {"power": "max"}}
        )
    assert invalid.value.status == 422
    status_body = status_of(invalid.value)
    assert status_body["reason"] == "Invalid"
    assert status_body["details"]["kind"] == "Gadget"
    assert status_body["details"]["causes"][0]["field"] == "spec.power"

    custom.delete_namespaced_custom_object(*args, "g")
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(*args, "g")
    assert gone.value.status == 404
    assert status_of(gone.value)["message"] == f'gadgets.{group} "g" not found'
    ext.delete_custom_resource_definition(f"gadgets.{group}")


def test_dry_run_and_delete_collection(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    dry = core.create_namespaced_config_map(ns, configmap("dry", {"a": "b"}), dry_run="All")
    assert dry.metadata.name == "dry" and dry.metadata.uid
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("dry", ns)
    assert missing.value.status == 404

    for i in range(6):
        core.create_namespaced_config_map(
            ns, configmap(f"coll-{i}", {}, {"batch": "a" if i < 4 else "b"})
        )
    core.delete_collection_namespaced_config_map(ns, label_selector="batch=a")
    left = sorted(c.metadata.name for c in core.list_namespaced_config_map(ns).items)
    assert left == ["coll-4", "coll-5"]
