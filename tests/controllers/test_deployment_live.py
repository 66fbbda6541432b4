"""The Deployment controller (with the ReplicaSet controller) against a real
apiserver: ReplicaSets named by pod-template-hash, rolling updates that keep
maxSurge/maxUnavailable at every step the pod watch shows, Recreate, rollback
by restoring an old template, revisionHistoryLimit, pause, the progress
deadline. The test plays the kubelet (tests/controllers/test_replicaset_live.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubevisor.client import Client
from kubevisor.controllers.podstate import is_ready
from kubevisor.controllers.podtemplate import SAFE_ALPHABET
from tests.controllers.nodeplay import eventually, namespace
from tests.controllers.test_replicaset_live import kubelet

JSON = dict[str, Any]
NS = "dep"
REV = "deployment.kubernetes.io/revision"


def deployment(name: str, replicas: int, *, image: str = "busybox:1", surge: Any = "25%",
               unavailable: Any = "25%", strategy: str = "RollingUpdate",
               history: int | None = None, deadline: int | None = None) -> JSON:
    spec: JSON = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}},
                               "spec": {"containers": [{"name": "c", "image": image}]}}}
    if strategy == "Recreate":
        spec["strategy"] = {"type": "Recreate"}
    else:
        spec["strategy"] = {"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    if history is not None:
        spec["revisionHistoryLimit"] = history
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


async def get_deploy(api: Client, name: str) -> JSON:
    return await api.get("apps/v1", "Deployment", name, namespace=NS)


async def replicasets(api: Client, name: str) -> list[JSON]:
    items = (await api.list("apps/v1", "ReplicaSet", namespace=NS,
                            label_selector=f"app={name}"))["items"]
    return sorted(items, key=lambda rs: int(rs["metadata"]["annotations"].get(REV, "0")))


def condition(obj: JSON, type_: str) -> JSON:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond  # type: ignore[no-any-return]
    return {}


async def rolled_out(api: Client, name: str) -> JSON | None:
    """The Deployment once ``kubectl rollout status`` would say it is done."""
    d = await get_deploy(api, name)
    st = d.get("status") or {}
    want = d["spec"]["replicas"]
    done = (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want
            and st.get("availableReplicas", 0) == want
            and condition(d, "Progressing").get("reason") == "NewReplicaSetAvailable")
    return d if done else None


async def set_image(api: Client, name: str, image: str) -> None:
    await api.patch("apps/v1", "Deployment", name, {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": image}]}}}}, namespace=NS)


@contextlib.asynccontextmanager
async def pod_counts(api: Client, selector: str) -> AsyncIterator[list[tuple[int, int, set[str]]]]:
    """(active pods, ready active pods, images) after every pod watch event
    (from the end of the initial list on)."""
    seen: list[tuple[int, int, set[str]]] = []
    live: dict[str, JSON] = {}
    synced = asyncio.Event()

    async def loop() -> None:
        async for etype, pod in api.watch("v1", "Pod", namespace=NS, label_selector=selector):
            if etype == "BOOKMARK":
                synced.set()
                continue
            name = pod["metadata"]["name"]
            if etype == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                live.pop(name, None)
            else:
                live[name] = pod
            if not synced.is_set():
                continue
            images = {p["spec"]["containers"][0]["image"] for p in live.values()}
            seen.append((len(live), sum(1 for p in live.values() if is_ready(p)), images))

    task = asyncio.create_task(loop())
    await asyncio.wait_for(synced.wait(), 30)
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_replicaset_named_by_template_hash(api: Client) -> None:
    await namespace(api, NS)
    async with kubelet(api, NS):
        d = await api.create(deployment("web", 3))
        done = await eventually(lambda: rolled_out(api, "web"), what="rollout")
    [rs] = await replicasets(api, "web")
    md = rs["metadata"]
    hash_ = md["labels"]["pod-template-hash"]
    assert md["name"] == f"web-{hash_}"
    assert 1 <= len(hash_) <= 10 and set(hash_) <= set(SAFE_ALPHABET)
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": hash_}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == hash_
    assert md["ownerReferences"] == [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "uid": d["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert md["annotations"][REV] == "1"
    assert md["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert md["annotations"]["deployment.kubernetes.io/max-replicas"] == "4"  # 25% of 3, up
    assert done["metadata"]["annotations"][REV] == "1"
    pods = (await api.list("v1", "Pod", namespace=NS, label_selector="app=web"))["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{hash_}-")
        assert pod["metadata"]["labels"]["pod-template-hash"] == hash_
    st = done["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"],
            st["availableReplicas"]) == (3, 3, 3, 3)
    assert "unavailableReplicas" not in st
    available = condition(done, "Available")
    assert (available["status"], available["reason"], available["message"]) == (
        "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    progressing = condition(done, "Progressing")
    assert progressing["status"] == "True"
    assert progressing["message"] == f'ReplicaSet "web-{hash_}" has successfully progressed.'
    assert progressing["lastUpdateTime"] and progressing["lastTransitionTime"]

    async def scaled_event() -> bool:
        events = (await api.list("v1", "Event", namespace=NS))["items"]
        return any(e["reason"] == "ScalingReplicaSet" and e["involvedObject"]["name"] == "web"
                   and e["message"] == f"Scaled up replica set web-{hash_} from 0 to 3"
                   for e in events)

    await eventually(scaled_event, what="ScalingReplicaSet event")

    # at rest nothing is rewritten: status only when it changed
    before = ((await get_deploy(api, "web"))["metadata"]["resourceVersion"],
              [x["metadata"]["resourceVersion"] for x in await replicasets(api, "web")])
    await asyncio.sleep(1.5)
    after = ((await get_deploy(api, "web"))["metadata"]["resourceVersion"],
             [x["metadata"]["resourceVersion"] for x in await replicasets(api, "web")])
    assert before == after


@pytest.mark.slow
@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [(4, 1, 1), (5, "20%", 0),
                                                                 (4, 0, "50%")])
async def test_rolling_update_keeps_surge_and_unavailable_bounds(
        api: Client, replicas: int, surge: Any, unavailable: Any) -> None:
    await namespace(api, NS)
    max_surge = {1: 1, "20%": 1, 0: 0}[surge]
    max_unavailable = {1: 1, 0: 0, "50%": 2}[unavailable]
    async with kubelet(api, NS, delay=0.15):
        await api.create(deployment("roll", replicas, surge=surge, unavailable=unavailable))
        await eventually(lambda: rolled_out(api, "roll"), what="first rollout")
        first = await replicasets(api, "roll")
        async with pod_counts(api, "app=roll") as seen:
            await set_image(api, "roll", "busybox:2")
            done = await eventually(lambda: rolled_out(api, "roll"), timeout=60,
                                    what="second rollout")
    assert done["metadata"]["annotations"][REV] == "2"
    assert seen, "the watch saw no pod events"
    for total, ready, _ in seen:
        assert total <= replicas + max_surge, seen
        assert ready >= replicas - max_unavailable, seen
    assert seen[-1][0] == replicas and seen[-1][2] == {"busybox:2"}
    assert any(len(images) == 2 for _, _, images in seen), "old and new never overlapped"
    rss = await replicasets(api, "roll")
    assert len(rss) == 2 and rss[0]["metadata"]["name"] == first[0]["metadata"]["name"]
    assert rss[0]["spec"]["replicas"] == 0 and rss[1]["spec"]["replicas"] == replicas


@pytest.mark.slow
async def test_recreate_never_mixes_old_and_new_pods(api: Client) -> None:
    await namespace(api, NS)
    async with kubelet(api, NS, delay=0.1):
        await api.create(deployment("rec", 3, strategy="Recreate"))
        await eventually(lambda: rolled_out(api, "rec"), what="first rollout")
        async with pod_counts(api, "app=rec") as seen:
            await set_image(api, "rec", "busybox:2")
            await eventually(lambda: rolled_out(api, "rec"), timeout=60, what="recreate")
    assert all(len(images) <= 1 for _, _, images in seen), seen
    assert any(total == 0 for total, _, _ in seen), "old pods not all gone before new ones"
    assert seen[-1][2] == {"busybox:2"} and seen[-1][0] == 3


@pytest.mark.slow
async def test_rollback_by_restoring_the_old_template(api: Client) -> None:
    await namespace(api, NS)
    async with kubelet(api, NS):
        await api.create(deployment("undo", 2))
        await eventually(lambda: rolled_out(api, "undo"), what="v1")
        [v1] = await replicasets(api, "undo")
        await set_image(api, "undo", "busybox:2")
        await eventually(lambda: rolled_out(api, "undo"), what="v2")
        # what kubectl rollout undo does: the old RS's template, hash label removed
        template = v1["spec"]["template"]
        template["metadata"]["labels"].pop("pod-template-hash")
        await api.patch("apps/v1", "Deployment", "undo",
                        [{"op": "replace", "path": "/spec/template", "value": template}],
                        namespace=NS, type="json")
        done = await eventually(lambda: rolled_out(api, "undo"), what="rollback")
    assert done["metadata"]["annotations"][REV] == "3"
    rss = {rs["metadata"]["name"]: rs for rs in await replicasets(api, "undo")}
    assert len(rss) == 2
    back = rss[v1["metadata"]["name"]]
    assert back["metadata"]["annotations"][REV] == "3"
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert back["spec"]["replicas"] == 2
    assert [rs["spec"]["replicas"] for n, rs in rss.items() if n != v1["metadata"]["name"]] == [0]


@pytest.mark.slow
async def test_revision_history_limit(api: Client) -> None:
    await namespace(api, NS)
    async with kubelet(api, NS):
        await api.create(deployment("hist", 1, history=1))
        await eventually(lambda: rolled_out(api, "hist"), what="v1")
        for version in (2, 3, 4):
            await set_image(api, "hist", f"busybox:{version}")
            await eventually(lambda: rolled_out(api, "hist"), what=f"v{version}")

        async def trimmed() -> list[JSON] | None:
            rss = await replicasets(api, "hist")
            return rss if len(rss) == 2 else None

        rss = await eventually(trimmed, what="history trimmed to 1 old ReplicaSet")
    assert [rs["metadata"]["annotations"][REV] for rs in rss] == ["3", "4"]


@pytest.mark.slow
async def test_pause_scale_and_resume(api: Client) -> None:
    await namespace(api, NS)
    async with kubelet(api, NS):
        await api.create(deployment("p", 2))
        await eventually(lambda: rolled_out(api, "p"), what="v1")
        await api.patch("apps/v1", "Deployment", "p", {"spec": {"paused": True}}, namespace=NS)
        await set_image(api, "p", "busybox:2")

        async def shows_paused() -> JSON | None:
            d = await get_deploy(api, "p")
            cond = condition(d, "Progressing")
            ok = (cond.get("reason") == "DeploymentPaused" and cond.get("status") == "Unknown"
                  and d["status"].get("observedGeneration") == d["metadata"]["generation"])
            return d if ok else None

        await eventually(shows_paused, what="Progressing DeploymentPaused")
        # paused: scaling still applies, no new ReplicaSet appears
        await api.patch("apps/v1", "Deployment", "p", {"spec": {"replicas": 3}}, namespace=NS)

        async def scaled() -> bool:
            rss = await replicasets(api, "p")
            return len(rss) == 1 and rss[0]["spec"]["replicas"] == 3

        await eventually(scaled, what="scaled while paused")
        await asyncio.sleep(0.3)
        assert len(await replicasets(api, "p")) == 1
        await api.patch("apps/v1", "Deployment", "p", {"spec": {"paused": False}}, namespace=NS)
        done = await eventually(lambda: rolled_out(api, "p"), what="rollout after resume")
    assert done["metadata"]["annotations"][REV] == "2"
    rss = await replicasets(api, "p")
    assert [rs["spec"]["replicas"] for rs in rss] == [0, 3]


async def test_progress_deadline_exceeded(api: Client) -> None:
    await namespace(api, NS)
    await api.create(deployment("stuck", 2, deadline=1))  # no kubelet: pods never ready

    async def timed_out() -> JSON | None:
        d = await get_deploy(api, "stuck")
        cond = condition(d, "Progressing")
        return cond if cond.get("reason") == "ProgressDeadlineExceeded" else None

    cond = await eventually(timed_out, timeout=15, what="ProgressDeadlineExceeded")
    [rs] = await replicasets(api, "stuck")
    assert cond["status"] == "False"
    assert cond["message"] == f'ReplicaSet "{rs["metadata"]["name"]}" has timed out progressing.'
    d = await get_deploy(api, "stuck")
    available = condition(d, "Available")
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")
    assert d["status"]["unavailableReplicas"] == 2
