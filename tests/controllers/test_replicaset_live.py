"""The ReplicaSet controller against a real apiserver: creates pods from the
template, scales, replaces deleted pods, adopts orphans and releases strays,
counts ready/available pods in its status. The test plays the kubelet by
setting pod status through the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from kubevisor.client import Client, NotFoundError
from kubevisor.controllers.podtemplate import SAFE_ALPHABET
from tests.controllers.nodeplay import eventually, namespace, pods, run_ready

JSON = dict[str, Any]
NS = "rs"


def replicaset(name: str, replicas: int, *, labels: dict[str, str] | None = None,
               min_ready: int = 0) -> JSON:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, "tier": "x"},
                                               "annotations": {"note": "from-template"}},
                                  "spec": {"containers": [{"name": "c",
                                                           "image": "busybox"}]}}}}


async def active_pods(api: Client, selector: str) -> dict[str, JSON]:
    return {n: p for n, p in (await pods(api, NS, selector)).items()
            if not p["metadata"].get("deletionTimestamp")}


async def rs_status(api: Client, name: str) -> JSON:
    return (await api.get("apps/v1", "ReplicaSet", name, namespace=NS)).get("status") or {}


@contextlib.asynccontextmanager
async def kubelet(api: Client, ns: str, *, delay: float = 0.0) -> AsyncIterator[None]:
    """Marks every pod of ``ns`` Running and Ready (after ``delay`` seconds)."""
    seen: set[str] = set()

    async def mark(name: str) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(NotFoundError):
            await run_ready(api, ns, name)

    async def loop() -> None:
        async with asyncio.TaskGroup() as group:
            async for etype, pod in api.watch("v1", "Pod", namespace=ns):
                md = pod.get("metadata") or {}
                if etype in ("ADDED", "MODIFIED") and md.get("uid") not in seen \
                        and not md.get("deletionTimestamp"):
                    seen.add(md["uid"])
                    group.create_task(mark(md["name"]))

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_creates_scales_and_replaces_pods(api: Client) -> None:
    await namespace(api, NS)
    rs = await api.create(replicaset("web", 3))

    async def three() -> dict[str, JSON] | None:
        found = await active_pods(api, "app=web")
        return found if len(found) == 3 else None

    made = await eventually(three, what="3 pods")
    for name, pod in made.items():
        md = pod["metadata"]
        assert name.startswith("web-") and len(name) == len("web-") + 5
        assert set(name[4:]) <= set(SAFE_ALPHABET)
        assert md["generateName"] == "web-"
        assert md["labels"] == {"app": "web", "tier": "x"}
        assert md["annotations"] == {"note": "from-template"}
        assert md["ownerReferences"] == [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
            "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]

    async def counted() -> bool:
        st = await rs_status(api, "web")
        return (st.get("replicas") == 3 and st.get("fullyLabeledReplicas") == 3
                and st.get("observedGeneration") == 1 and not st.get("readyReplicas"))

    await eventually(counted, what="status replicas 3, none ready")

    async def create_events() -> bool:
        events = (await api.list("v1", "Event", namespace=NS))["items"]
        return {e["message"] for e in events if e["reason"] == "SuccessfulCreate"
                and e["involvedObject"]["kind"] == "ReplicaSet"} == {
                    f"Created pod: {n}" for n in made}

    await eventually(create_events, what="SuccessfulCreate events")

    for name in list(made)[:2]:
        await run_ready(api, NS, name)

    async def two_ready() -> bool:
        st = await rs_status(api, "web")
        return st.get("readyReplicas") == 2 and st.get("availableReplicas") == 2

    await eventually(two_ready, what="2 ready")

    # scale up: 5 pods; scale down to 2 deletes the not-ready ones first
    await api.patch("apps/v1", "ReplicaSet", "web", {"spec": {"replicas": 5}}, namespace=NS)
    await eventually(lambda: _count(api, "app=web", 5), what="5 pods")
    ready = set(list(made)[:2])
    await api.patch("apps/v1", "ReplicaSet", "web", {"spec": {"replicas": 2}}, namespace=NS)
    await eventually(lambda: _count(api, "app=web", 2), what="2 pods")
    assert set(await active_pods(api, "app=web")) == ready

    async def scaled_status() -> bool:
        st = await rs_status(api, "web")
        return (st.get("replicas") == 2 and st.get("readyReplicas") == 2
                and st.get("observedGeneration") == 3)

    await eventually(scaled_status, what="status after scale down")

    # a deleted pod is replaced
    victim = sorted(ready)[0]
    await api.delete("v1", "Pod", victim, namespace=NS)

    async def replaced() -> bool:
        now = await active_pods(api, "app=web")
        return len(now) == 2 and victim not in now

    await eventually(replaced, what="replacement pod")
    # and nothing more: the count stays 2 for a while
    await asyncio.sleep(0.5)
    assert len(await active_pods(api, "app=web")) == 2


async def _count(api: Client, selector: str, n: int) -> bool:
    return len(await active_pods(api, selector)) == n


async def test_adopts_orphans_and_releases_strays(api: Client) -> None:
    await namespace(api, NS)
    for i in range(2):
        await api.create({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": f"orphan-{i}", "namespace": NS,
                                       "labels": {"app": "db"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    rs = await api.create(replicaset("db", 3))
    uid = rs["metadata"]["uid"]

    async def adopted() -> bool:
        found = await active_pods(api, "app=db")
        owned = [p for p in found.values()
                 if any(r["uid"] == uid and r.get("controller")
                        for r in p["metadata"].get("ownerReferences") or [])]
        return len(found) == 3 and len(owned) == 3

    await eventually(adopted, what="2 orphans adopted, 1 pod created")
    names = set(await active_pods(api, "app=db"))
    assert {"orphan-0", "orphan-1"} <= names

    # a pod relabelled out of the selector is released and replaced
    await api.patch("v1", "Pod", "orphan-0", {"metadata": {"labels": {"app": "other"}}},
                    namespace=NS)

    async def released() -> bool:
        pod = await api.get("v1", "Pod", "orphan-0", namespace=NS)
        return not pod["metadata"].get("ownerReferences") and \
            len(await active_pods(api, "app=db")) == 3

    await eventually(released, what="release and replacement")

    # pods of another controller are left alone
    other = await api.get("v1", "Pod", "orphan-0", namespace=NS)
    assert other["metadata"]["labels"] == {"app": "other"}


async def test_min_ready_seconds_and_kubelet(api: Client) -> None:
    await namespace(api, NS)
    async with kubelet(api, NS):
        await api.create(replicaset("slow", 2, min_ready=2))

        async def ready_not_available() -> bool:
            st = await rs_status(api, "slow")
            return st.get("readyReplicas") == 2 and not st.get("availableReplicas")

        await eventually(ready_not_available, what="ready but not yet available")

        async def available() -> bool:
            return (await rs_status(api, "slow")).get("availableReplicas") == 2

        await eventually(available, timeout=10, what="available after minReadySeconds")


async def test_replica_failure_condition_when_creates_fail(api: Client) -> None:
    await namespace(api, NS)
    body = replicaset("bad", 2)
    # the apiserver takes the ReplicaSet but refuses every pod made from it
    body["spec"]["template"]["metadata"]["finalizers"] = ["bad finalizer!"]
    await api.create(body)

    async def failing() -> JSON | None:
        for cond in (await rs_status(api, "bad")).get("conditions") or []:
            if cond["type"] == "ReplicaFailure":
                return cond
        return None

    cond = await eventually(failing, what="ReplicaFailure condition")
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate"
    assert "finalizers" in cond["message"]
    # the template is fixed: pods get made and the condition goes away
    await api.patch("apps/v1", "ReplicaSet", "bad",
                    [{"op": "remove", "path": "/spec/template/metadata/finalizers"}],
                    namespace=NS, type="json")
    await eventually(lambda: _count(api, "app=bad", 2), what="2 pods once fixed")

    async def cleared() -> bool:
        return await failing() is None

    await eventually(cleared, timeout=15, what="ReplicaFailure removed")
