"""The StatefulSet controller against a real apiserver; the test plays the
node agent (marks pods Running and Ready through the status subresource)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from kubevisor.client import Client, ConflictError
from tests.controllers.nodeplay import (
    eventually,
    finish_deletions,
    kubectl,
    namespace,
    pods,
    run_ready,
)

NS = "sts"
LABELS = {"app": "web"}


def statefulset(name: str = "web", *, replicas: int = 3, policy: str = "OrderedReady",
                claims: bool = False, partition: int | None = None,
                node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas, "serviceName": "web-svc", "podManagementPolicy": policy,
        "selector": {"matchLabels": LABELS},
        "template": {"metadata": {"labels": LABELS},
                     "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}
    if claims:
        spec["volumeClaimTemplates"] = [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]
    if node:  # bound pods are deleted gracefully: they stay Terminating meanwhile
        spec["template"]["spec"]["nodeName"] = node
    if partition is not None:
        spec["updateStrategy"] = {"type": "RollingUpdate",
                                  "rollingUpdate": {"partition": partition}}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


async def names(api: Client) -> set[str]:
    return set(await pods(api, NS, "app=web"))


async def settle() -> None:
    """Long enough for the controller to act if it (wrongly) would."""
    await asyncio.sleep(0.5)


async def test_ordered_ready_creates_one_by_one_with_claims_and_identity(api: Client) -> None:
    await namespace(api, NS)
    sts = await api.create(statefulset(claims=True, node="n1"))

    await eventually(lambda: _has(api, {"web-0"}), what="web-0 created")
    await settle()
    assert await names(api) == {"web-0"}, "web-1 created before web-0 was ready"
    pod0 = (await pods(api, NS))["web-0"]
    labels = pod0["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert labels["apps.kubernetes.io/pod-index"] == "0"
    assert labels["controller-revision-hash"].startswith("web-")
    assert pod0["spec"]["hostname"] == "web-0" and pod0["spec"]["subdomain"] == "web-svc"
    ref = pod0["metadata"]["ownerReferences"][0]
    assert ref["uid"] == sts["metadata"]["uid"] and ref["controller"] is True
    assert ref["blockOwnerDeletion"] is True
    vols = {v["name"]: v for v in pod0["spec"]["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "data-web-0"
    pvc = await api.get("v1", "PersistentVolumeClaim", "data-web-0", namespace=NS)
    assert pvc["metadata"]["labels"]["app"] == "web"

    await run_ready(api, NS, "web-0")
    await eventually(lambda: _has(api, {"web-0", "web-1"}), what="web-1 created")
    await settle()
    assert await names(api) == {"web-0", "web-1"}
    await run_ready(api, NS, "web-1")
    await eventually(lambda: _has(api, {"web-0", "web-1", "web-2"}), what="web-2 created")
    await run_ready(api, NS, "web-2")

    async def status_ready() -> bool:
        st = (await api.get("apps/v1", "StatefulSet", "web", namespace=NS)).get("status", {})
        return bool(st.get("readyReplicas") == 3 and st.get("replicas") == 3
                    and st.get("updatedReplicas") == 3
                    and st.get("currentRevision") == st.get("updateRevision")
                    and st.get("observedGeneration") == 1)

    await eventually(status_ready, what="status 3/3 ready")
    claims = {c["metadata"]["name"] for c in
              (await api.list("v1", "PersistentVolumeClaim", namespace=NS))["items"]}
    assert claims == {"data-web-0", "data-web-1", "data-web-2"}
    revs = (await api.list("apps/v1", "ControllerRevision", namespace=NS))["items"]
    assert len(revs) == 1 and revs[0]["revision"] == 1

    async def created_events() -> set[str] | None:
        listed = await api.list("v1", "Event", namespace=NS,
                                field_selector="involvedObject.name=web")
        got = {e["message"] for e in listed["items"] if e["reason"] == "SuccessfulCreate"}
        return got if len(got) >= 6 else None

    assert {"create Pod web-0 in StatefulSet web successful",
            "create Claim data-web-2 in StatefulSet web success"} <= \
        await eventually(created_events, what="SuccessfulCreate events")

    # scale down: highest ordinal first, one at a time; claims are kept
    await api.patch("apps/v1", "StatefulSet", "web", {"spec": {"replicas": 1}}, namespace=NS)
    await eventually(lambda: _terminating(api, "web-2"), what="web-2 deleted")
    await settle()
    current = await pods(api, NS)
    assert not current["web-1"]["metadata"].get("deletionTimestamp"), \
        "web-1 deleted while web-2 was terminating"
    await finish_deletions(api, NS)
    await eventually(lambda: _terminating(api, "web-1"), what="web-1 deleted next")
    assert not (await pods(api, NS))["web-0"]["metadata"].get("deletionTimestamp")
    await finish_deletions(api, NS)
    await eventually(lambda: _has(api, {"web-0"}), what="scaled down to 1")
    assert claims == {c["metadata"]["name"] for c in
                      (await api.list("v1", "PersistentVolumeClaim", namespace=NS))["items"]}


async def test_parallel_creates_all_at_once(api: Client) -> None:
    await namespace(api, NS)
    await api.create(statefulset(replicas=4, policy="Parallel"))
    await eventually(lambda: _has(api, {"web-0", "web-1", "web-2", "web-3"}),
                     what="all four created without readiness")
    await api.patch("apps/v1", "StatefulSet", "web", {"spec": {"replicas": 1}}, namespace=NS)
    await eventually(lambda: _has(api, {"web-0"}), what="all condemned deleted at once")


async def test_rolling_update_highest_first_down_to_partition(api: Client) -> None:
    await namespace(api, NS)
    await api.create(statefulset(replicas=3, partition=1))
    for i in range(3):
        await eventually(lambda i=i: _has_at_least(api, {f"web-{i}"}))
        await run_ready(api, NS, f"web-{i}")
    old = {n: p["metadata"]["labels"]["controller-revision-hash"]
           for n, p in (await pods(api, NS)).items()}
    assert len(set(old.values())) == 1
    for _ in range(20):  # retried on conflict: the controller writes status meanwhile
        sts = await api.get("apps/v1", "StatefulSet", "web", namespace=NS)
        body = copy.deepcopy(sts)
        body["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
        try:
            await api.update(body)
            break
        except ConflictError:
            continue

    async def pod_updated(name: str) -> dict[str, Any] | None:
        await finish_deletions(api, NS)
        pod = (await pods(api, NS)).get(name)
        if pod and pod["spec"]["containers"][0]["image"] == "busybox:2":
            return pod
        return None

    await eventually(lambda: pod_updated("web-2"), what="web-2 updated first")
    current = await pods(api, NS)
    assert current["web-1"]["spec"]["containers"][0]["image"] == "busybox:1", \
        "web-1 replaced before web-2 was ready"
    await run_ready(api, NS, "web-2")
    await eventually(lambda: pod_updated("web-1"), what="web-1 updated next")
    await run_ready(api, NS, "web-1")

    async def partitioned_done() -> bool:
        st = (await api.get("apps/v1", "StatefulSet", "web", namespace=NS))["status"]
        return bool(st.get("updatedReplicas") == 2 and st.get("readyReplicas") == 3)

    await eventually(partitioned_done, what="partitioned roll out")
    await settle()
    assert (await pods(api, NS))["web-0"]["spec"]["containers"][0]["image"] == "busybox:1"
    st = (await api.get("apps/v1", "StatefulSet", "web", namespace=NS))["status"]
    assert st["currentRevision"] != st["updateRevision"]

    # web-0 deleted by hand comes back at the current revision (below the partition)
    await api.delete("v1", "Pod", "web-0", namespace=NS)

    async def recreated() -> dict[str, Any] | None:
        pod = (await pods(api, NS)).get("web-0")
        return pod if pod and pod["metadata"]["labels"]["controller-revision-hash"] == \
            old["web-0"] else None

    pod0 = await eventually(recreated, what="web-0 re-created")
    assert pod0["spec"]["containers"][0]["image"] == "busybox:1"
    await run_ready(api, NS, "web-0")
    # partition 0 finishes the roll out
    await api.patch("apps/v1", "StatefulSet", "web", {"spec": {"updateStrategy": {
        "rollingUpdate": {"partition": 0}}}}, namespace=NS)
    await eventually(lambda: pod_updated("web-0"), what="web-0 updated at partition 0")
    await run_ready(api, NS, "web-0")

    async def complete() -> bool:
        st = (await api.get("apps/v1", "StatefulSet", "web", namespace=NS))["status"]
        return bool(st.get("currentRevision") == st.get("updateRevision")
                    and st.get("updatedReplicas") == 3 and st.get("currentReplicas") == 3)

    await eventually(complete, what="roll out complete")
    revs = (await api.list("apps/v1", "ControllerRevision", namespace=NS))["items"]
    assert sorted(r["revision"] for r in revs) == [1, 2]


async def _has(api: Client, expected: set[str]) -> bool:
    return await names(api) == expected


async def _has_at_least(api: Client, expected: set[str]) -> bool:
    return expected <= await names(api)


async def _terminating(api: Client, name: str) -> bool:
    pod = (await pods(api, NS)).get(name)
    return pod is not None and bool(pod["metadata"].get("deletionTimestamp"))


async def test_kubectl_rollout_status(api: Client, tmp_path: Path) -> None:
    await namespace(api, NS)
    await api.create(statefulset(replicas=2))
    rollout = asyncio.create_task(kubectl(
        tmp_path / "kubeconfig", "-n", NS, "rollout", "status", "statefulset/web",
        "--timeout=60s"))
    while not rollout.done():  # the agent: every pod it is given runs and is ready
        for name, pod in (await pods(api, NS)).items():
            if pod.get("status", {}).get("phase") != "Running":
                await run_ready(api, NS, name)
        await asyncio.sleep(0.1)
    out = await rollout
    # kubectl says "partitioned" whenever rollingUpdate is set (the server defaults it)
    assert "partitioned roll out complete: 2 new pods have been updated" in out, out
    table = await kubectl(tmp_path / "kubeconfig", "-n", NS, "get", "statefulset", "web")
    assert table.splitlines()[1].split()[:2] == ["web", "2/2"], table
    history = await kubectl(tmp_path / "kubeconfig", "-n", NS, "get", "controllerrevisions")
    assert "statefulset.apps/web" in history, history
    out = await kubectl(tmp_path / "kubeconfig", "-n", NS, "describe", "statefulset", "web")
    assert "Pods Status:        2 Running / 0 Waiting / 0 Succeeded / 0 Failed" in out, out


async def test_orphan_pod_is_adopted_not_replaced(api: Client) -> None:
    await namespace(api, NS)
    orphan = await api.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": NS, "labels": dict(LABELS)},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})
    sts = await api.create(statefulset(replicas=1))

    async def adopted() -> dict[str, Any] | None:
        pod = (await pods(api, NS)).get("web-0")
        refs = (pod or {}).get("metadata", {}).get("ownerReferences") or []
        return pod if refs else None

    pod = await eventually(adopted, what="web-0 adopted")
    assert pod["metadata"]["uid"] == orphan["metadata"]["uid"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["uid"] == sts["metadata"]["uid"] and ref["controller"] is True


async def test_kubectl_rollout_undo(api: Client, tmp_path: Path) -> None:
    await namespace(api, NS)
    await api.create(statefulset(replicas=1))

    async def revision_numbers() -> list[int]:
        got = (await api.list("apps/v1", "ControllerRevision", namespace=NS))["items"]
        return sorted(r["revision"] for r in got)

    async def numbers_are(expected: list[int]) -> bool:
        return await revision_numbers() == expected

    await eventually(lambda: numbers_are([1]))
    await api.patch("apps/v1", "StatefulSet", "web", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "busybox:2"}]}}}}, namespace=NS)
    await eventually(lambda: numbers_are([1, 2]))
    await kubectl(tmp_path / "kubeconfig", "-n", NS, "rollout", "undo", "statefulset/web")
    sts = await api.get("apps/v1", "StatefulSet", "web", namespace=NS)
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
    await eventually(lambda: numbers_are([2, 3]), what="revision 1 renumbered as 3")
