"""The pure parts of the Deployment controller: the pod-template-hash, the
surge/unavailable arithmetic, one sync step at a time of a rolling update,
Recreate, rollback revisions, proportional scaling, pause, conditions."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubevisor.controllers import rollout as r
from kubevisor.controllers.deployment import (
    CreateReplicaSet,
    DeleteReplicaSet,
    UpdateReplicaSet,
    plan,
)
from kubevisor.controllers.podtemplate import (
    HASH_LABEL,
    SAFE_ALPHABET,
    equal_ignore_hash,
    fnv32a,
    safe_encode,
    template_hash,
    with_hash_label,
)

JSON = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STAMP = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def template(image: str) -> JSON:
    return {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def deployment(replicas: int = 3, image: str = "v1", *, surge: Any = "25%",
               unavailable: Any = "25%", strategy: str = "RollingUpdate", **spec: Any) -> JSON:
    strat: JSON = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": template(image), "strategy": strat,
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600, **spec},
            "status": {}}


def replicaset(image: str, replicas: int, *, available: int | None = None, revision: int = 1,
               created: int = 0, deploy_replicas: int = 3) -> JSON:
    hash_ = template_hash(template(image))
    available = replicas if available is None else available
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"web-{hash_}", "namespace": "ns", "uid": f"uid-{image}",
                         "generation": 1,
                         "creationTimestamp": (NOW + timedelta(seconds=created)).strftime(
                             "%Y-%m-%dT%H:%M:%SZ"),
                         "annotations": {r.REVISION: str(revision),
                                         r.DESIRED_REPLICAS: str(deploy_replicas),
                                         r.MAX_REPLICAS: str(deploy_replicas + 1)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": "web", "uid": "d-uid",
                                              "controller": True}]},
            "spec": {"replicas": replicas, "minReadySeconds": 0,
                     "selector": {"matchLabels": {"app": "web", HASH_LABEL: hash_}},
                     "template": with_hash_label(template(image), hash_)},
            "status": {"replicas": replicas, "readyReplicas": available,
                       "availableReplicas": available, "observedGeneration": 1}}


def apply(rss: list[JSON], actions: list[Any]) -> list[JSON]:
    """What the apiserver would hold after the actions (statuses unchanged)."""
    by_name = {rs["metadata"]["name"]: rs for rs in rss}
    for action in actions:
        if isinstance(action, CreateReplicaSet | UpdateReplicaSet):
            body = copy.deepcopy(action.body)
            body["metadata"].setdefault("uid", "uid-" + body["metadata"]["name"])
            body["metadata"].setdefault("creationTimestamp", STAMP)
            body.setdefault("status", {})
            by_name[body["metadata"]["name"]] = body
        elif isinstance(action, DeleteReplicaSet):
            by_name.pop(action.rs["metadata"]["name"])
    return list(by_name.values())


# -- the hash ---------------------------------------------------------------


def test_fnv32a_and_safe_encoding() -> None:
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968
    assert safe_encode("0123456789") == "456789bcdf"


def test_template_hash_shape_and_stability() -> None:
    h = template_hash(template("v1"))
    assert 1 <= len(h) <= 10 and set(h) <= set(SAFE_ALPHABET)
    assert h == template_hash(template("v1"))
    assert h != template_hash(template("v2"))
    assert h == template_hash(with_hash_label(template("v1"), "zzz"))  # label ignored
    assert h != template_hash(template("v1"), collision_count=1)
    assert equal_ignore_hash(with_hash_label(template("v1"), h), template("v1"))
    with_null = template("v1")
    with_null["metadata"]["creationTimestamp"] = None  # as kubectl create sends it
    assert equal_ignore_hash(with_null, template("v1"))


# -- the budgets --------------------------------------------------------------


@pytest.mark.parametrize(("surge", "unavailable", "replicas", "want"), [
    ("25%", "25%", 3, (1, 0)),  # surge rounds up, unavailable down
    ("25%", "25%", 10, (3, 2)),
    (0, 0, 5, (0, 1)),  # never both zero
    ("20%", 0, 5, (1, 0)),
    (2, "50%", 5, (2, 2)),
])
def test_resolve_fenceposts(surge: Any, unavailable: Any, replicas: int,
                            want: tuple[int, int]) -> None:
    assert r.resolve_fenceposts(surge, unavailable, replicas) == want


def test_max_unavailable_is_capped_and_zero_for_recreate() -> None:
    assert r.max_unavailable(deployment(2, unavailable=5)) == 2
    assert r.max_unavailable(deployment(3, strategy="Recreate")) == 0
    assert r.max_surge(deployment(3, strategy="Recreate")) == 0


# -- sync steps -----------------------------------------------------------------


def test_first_sync_creates_the_replicaset() -> None:
    d = deployment(3)
    out = plan(d, [], now=NOW)
    [create] = out.actions
    assert isinstance(create, CreateReplicaSet)
    body = create.body
    hash_ = template_hash(d["spec"]["template"])
    assert body["metadata"]["name"] == f"web-{hash_}"
    assert body["metadata"]["labels"] == {"app": "web", HASH_LABEL: hash_}
    assert body["spec"]["replicas"] == 3
    assert body["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: hash_}
    assert body["metadata"]["annotations"] == {r.REVISION: "1", r.DESIRED_REPLICAS: "3",
                                               r.MAX_REPLICAS: "4"}
    assert out.annotations == {r.REVISION: "1"}
    progressing = r.find_condition(out.status["conditions"], r.PROGRESSING)  # type: ignore[index]
    assert progressing["reason"] == r.NEW_RS_CREATED
    assert progressing["message"] == f'Created new replica set "web-{hash_}"'
    assert out.events == [("Normal", "ScalingReplicaSet",
                           f"Scaled up replica set web-{hash_} from 0 to 3")]


def test_rolling_update_steps_stay_within_the_budgets() -> None:
    d = deployment(4, "v2", surge=1, unavailable=1)
    d["metadata"]["annotations"] = {r.REVISION: "1"}
    rss = [replicaset("v1", 4, deploy_replicas=4)]
    for _ in range(40):
        out = plan(d, rss, now=NOW)
        rss = apply(rss, out.actions)
        # the kubelet and the ReplicaSet controller: every pod appears and is available
        specs = sum(rs["spec"]["replicas"] for rs in rss)
        assert specs <= 5, rss
        available = sum(min(rs["spec"]["replicas"], rs["status"].get("availableReplicas", 0))
                        for rs in rss)
        assert available >= 3, rss
        for rs in rss:
            n = rs["spec"]["replicas"]
            rs["status"] = {"replicas": n, "readyReplicas": n, "availableReplicas": n,
                            "observedGeneration": 1}
        if out.status is not None:
            d["status"] = out.status
        if out.annotations is not None:
            d["metadata"]["annotations"] = out.annotations
        if r.complete(d, d["status"]) and not out.actions and out.status is None:
            break
    new = r.find_new(d, rss)
    assert new is not None and new["spec"]["replicas"] == 4
    assert [rs["spec"]["replicas"] for rs in rss if rs is not new] == [0]
    assert d["metadata"]["annotations"][r.REVISION] == "2"
    progressing = r.find_condition(d["status"]["conditions"], r.PROGRESSING)
    assert progressing is not None and progressing["reason"] == r.NEW_RS_AVAILABLE
    assert progressing["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has ' \
        "successfully progressed."


def test_new_replicaset_waits_for_old_pods_that_still_exist() -> None:
    """An old ReplicaSet scaled down whose status still counts its pods holds
    back the surge (pods that exist count, not only specs)."""
    d = deployment(2, "v2", surge=1, unavailable=0)
    old = replicaset("v1", 1, deploy_replicas=2)
    old["status"] = {"replicas": 2, "availableReplicas": 2, "readyReplicas": 2}
    new = replicaset("v2", 1, revision=2, created=5, deploy_replicas=2)
    out = plan(d, [old, new], now=NOW)
    assert not [a for a in out.actions if isinstance(a, UpdateReplicaSet)
                and a.body["metadata"]["name"] == new["metadata"]["name"]]


def test_recreate_scales_old_down_then_waits_for_pods_then_creates() -> None:
    d = deployment(3, "v2", strategy="Recreate")
    old = replicaset("v1", 3)
    out = plan(d, [old], now=NOW)
    [down] = out.actions
    assert isinstance(down, UpdateReplicaSet) and down.body["spec"]["replicas"] == 0
    old = copy.deepcopy(down.body)  # scaled down, a pod still terminating
    old["status"] = {"replicas": 0}
    running = {"metadata": {"name": "p", "ownerReferences": [
        {"uid": old["metadata"]["uid"], "controller": True, "kind": "ReplicaSet"}]},
        "status": {"phase": "Running"}}
    out = plan(d, [old], pods=[running], now=NOW)
    assert out.actions == [] and out.requeue_after is not None
    out = plan(d, [old], pods=[], now=NOW)
    [create] = out.actions
    assert isinstance(create, CreateReplicaSet) and create.body["spec"]["replicas"] == 3


def test_rollback_makes_the_old_replicaset_new_with_the_next_revision() -> None:
    d = deployment(3, "v1")  # template restored to v1
    v1 = replicaset("v1", 0, revision=1)
    v2 = replicaset("v2", 3, revision=2, created=5)
    out = plan(d, [v1, v2], now=NOW)
    updates = {a.body["metadata"]["name"]: a.body for a in out.actions
               if isinstance(a, UpdateReplicaSet)}
    back = updates[v1["metadata"]["name"]]
    assert back["metadata"]["annotations"][r.REVISION] == "3"
    assert back["metadata"]["annotations"][r.REVISION_HISTORY] == "1"
    assert back["spec"]["replicas"] == 1  # the first surge step
    assert out.annotations == {r.REVISION: "3"}


def test_proportional_scaling_mid_rollout() -> None:
    """kube's documented example: 10 replicas, maxSurge 3, mid-rollout 8 old
    and 5 new; scaled to 15, the 5 extra go 3 to the old and 2 to the new."""
    d = deployment(15, "v2", surge=3, unavailable=2)
    old = replicaset("v1", 8, available=8, deploy_replicas=10)
    new = replicaset("v2", 5, available=0, revision=2, created=5, deploy_replicas=10)
    for rs in (old, new):
        rs["metadata"]["annotations"][r.MAX_REPLICAS] = "13"
    out = plan(d, [old, new], now=NOW)
    sizes = {a.body["metadata"]["name"]: a.body["spec"]["replicas"] for a in out.actions}
    assert sizes == {old["metadata"]["name"]: 11, new["metadata"]["name"]: 7}
    for action in out.actions:
        assert action.body["metadata"]["annotations"][r.DESIRED_REPLICAS] == "15"  # type: ignore[union-attr]
        assert action.body["metadata"]["annotations"][r.MAX_REPLICAS] == "18"  # type: ignore[union-attr]


def test_paused_deployment_only_scales_and_says_so() -> None:
    d = deployment(5, "v2", paused=True)
    old = replicaset("v1", 3)
    out = plan(d, [old], now=NOW)
    assert [type(a) for a in out.actions] == [UpdateReplicaSet]
    assert out.actions[0].body["spec"]["replicas"] == 5  # type: ignore[union-attr]
    cond = r.find_condition(out.status["conditions"], r.PROGRESSING)  # type: ignore[index]
    assert (cond["status"], cond["reason"], cond["message"]) == (  # type: ignore[index]
        "Unknown", "DeploymentPaused", "Deployment is paused")


def test_history_limit_deletes_the_oldest_scaled_down_replicasets() -> None:
    d = deployment(1, "v4", revisionHistoryLimit=1)
    d["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                   "availableReplicas": 1}
    rss = [replicaset("v1", 0, revision=1), replicaset("v2", 0, revision=2, created=1),
           replicaset("v3", 0, revision=3, created=2),
           replicaset("v4", 1, revision=4, created=3, deploy_replicas=1)]
    out = plan(d, rss, now=NOW)
    deleted = [a.rs["metadata"]["name"] for a in out.actions if isinstance(a, DeleteReplicaSet)]
    assert deleted == [rss[0]["metadata"]["name"], rss[1]["metadata"]["name"]]


def test_progress_deadline() -> None:
    d = deployment(2, "v1", progressDeadlineSeconds=30)
    rs = replicaset("v1", 2, available=0, deploy_replicas=2)
    started = (NOW - timedelta(seconds=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    d["status"] = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                   "unavailableReplicas": 2, "conditions": [
                       {"type": "Progressing", "status": "True", "reason": r.RS_UPDATED,
                        "message": "x", "lastUpdateTime": started,
                        "lastTransitionTime": started}]}
    out = plan(d, [rs], now=NOW)
    cond = r.find_condition(out.status["conditions"], r.PROGRESSING)  # type: ignore[index]
    assert (cond["status"], cond["reason"]) == ("False", r.TIMED_OUT)  # type: ignore[index]
    assert cond["message"] == f'ReplicaSet "{rs["metadata"]["name"]}" has timed out ' \
        "progressing."  # type: ignore[index]
    # not yet past the deadline: look again when it is
    d["status"]["conditions"][0]["lastUpdateTime"] = (NOW - timedelta(seconds=10)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    out = plan(d, [rs], now=NOW)
    assert out.requeue_after == pytest.approx(21.0)
