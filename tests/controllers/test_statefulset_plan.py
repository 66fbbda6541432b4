"""The StatefulSet controller's pure plan: ordering, scale-down, claims,
rolling update with partition, status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubevisor.controllers.statefulset import (
    CreateClaim,
    CreatePod,
    DeleteClaim,
    DeletePod,
    build_pod,
    ordinal_of,
    plan,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEMPLATE = {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": "db:1"}]}}


def sts(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}}, "template": TEMPLATE, **spec}}


def pod(i: int, *, ready: bool = True, revision: str = "db-r1", phase: str = "Running",
        terminating: bool = False) -> dict[str, Any]:
    p = build_pod(sts(), TEMPLATE, i, revision)
    p["metadata"]["uid"] = f"p{i}"
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    p["status"] = {"phase": phase, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    return p


def run(obj: dict[str, Any], pods: list[dict[str, Any]], claims: set[str] | None = None,
        update: str = "db-r1", current: str = "db-r1", current_template: Any = None) -> Any:
    return plan(obj, pods, claims or set(), current_revision=current, update_revision=update,
                current_template=current_template or TEMPLATE, now=NOW)


def created(result: Any) -> list[str]:
    return [a.pod["metadata"]["name"] for a in result.actions if isinstance(a, CreatePod)]


def deleted(result: Any) -> list[str]:
    return [a.name for a in result.actions if isinstance(a, DeletePod)]


def test_ordinals() -> None:
    assert ordinal_of("db", "db-0") == 0 and ordinal_of("db", "db-12") == 12
    assert ordinal_of("db", "db-01") is None and ordinal_of("db", "dbx-1") is None
    assert ordinal_of("db", "db-a") is None


def test_ordered_ready_waits_for_each_pod() -> None:
    assert created(run(sts(), [])) == ["db-0"]
    assert run(sts(), [pod(0, ready=False)]).actions == []
    assert created(run(sts(), [pod(0)])) == ["db-1"]
    assert created(run(sts(), [pod(0), pod(1)])) == ["db-2"]
    assert run(sts(), [pod(0), pod(1), pod(2)]).actions == []


def test_parallel_creates_every_missing_pod() -> None:
    result = run(sts(podManagementPolicy="Parallel"), [pod(1, ready=False)])
    assert created(result) == ["db-0", "db-2"]


def test_failed_pod_is_deleted_to_be_recreated() -> None:
    assert deleted(run(sts(), [pod(0, phase="Failed")])) == ["db-0"]


def test_scale_down_highest_first_one_at_a_time() -> None:
    pods = [pod(i) for i in range(5)]
    assert deleted(run(sts(replicas=2), pods)) == ["db-4"]
    pods[4] = pod(4, terminating=True)
    assert run(sts(replicas=2), pods).actions == []
    assert deleted(run(sts(replicas=2, podManagementPolicy="Parallel"), pods)) == \
        ["db-3", "db-2"]
    # scale down waits while a wanted pod is unhealthy
    assert run(sts(replicas=2), [pod(0, ready=False), pod(1), pod(2)]).actions == []


def test_claims_come_before_the_pod_and_are_not_recreated() -> None:
    claims = [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
    result = run(sts(volumeClaimTemplates=claims), [])
    assert isinstance(result.actions[0], CreateClaim)
    assert result.actions[0].claim["metadata"]["name"] == "data-db-0"
    assert "ownerReferences" not in result.actions[0].claim["metadata"]
    assert isinstance(result.actions[1], CreatePod)
    vols = result.actions[1].pod["spec"]["volumes"]
    assert vols == [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
    again = run(sts(volumeClaimTemplates=claims), [], claims={"data-db-0"})
    assert [type(a) for a in again.actions] == [CreatePod]


def test_rolling_update_from_the_top_down_to_the_partition() -> None:
    old = [pod(i, revision="db-r1") for i in range(3)]
    spec = {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}
    result = run(sts(**spec), old, update="db-r2")
    assert deleted(result) == ["db-2"]
    # db-2 is back at r2 but not ready yet: wait
    mid = [old[0], old[1], pod(2, revision="db-r2", ready=False)]
    assert run(sts(**spec), mid, update="db-r2").actions == []
    mid[2] = pod(2, revision="db-r2")
    assert deleted(run(sts(**spec), mid, update="db-r2")) == ["db-1"]
    done = [old[0], pod(1, revision="db-r2"), pod(2, revision="db-r2")]
    assert run(sts(**spec), done, update="db-r2").actions == []
    # below the partition a missing pod comes back from the current revision
    old_template = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "db:0"}]}}
    result = run(sts(**spec), done[1:], update="db-r2", current_template=old_template)
    [new] = [a.pod for a in result.actions if isinstance(a, CreatePod)]
    assert new["metadata"]["labels"]["controller-revision-hash"] == "db-r1"
    assert new["spec"]["containers"][0]["image"] == "db:0"


def test_on_delete_never_deletes_for_an_update() -> None:
    old = [pod(i) for i in range(3)]
    assert run(sts(updateStrategy={"type": "OnDelete"}), old, update="db-r2").actions == []


def test_status_moves_current_revision_when_all_updated_and_ready() -> None:
    pods = [pod(i, revision="db-r2") for i in range(3)]
    status = run(sts(), pods, update="db-r2", current="db-r1").status
    assert status["currentRevision"] == "db-r2" and status["currentReplicas"] == 3
    assert status["readyReplicas"] == status["availableReplicas"] == 3
    pods[0] = pod(0, revision="db-r1")
    status = run(sts(), pods, update="db-r2", current="db-r1").status
    assert status["currentRevision"] == "db-r1"
    assert (status["currentReplicas"], status["updatedReplicas"]) == (1, 2)
    assert status["observedGeneration"] == 1


def test_pod_identity() -> None:
    p = build_pod(sts(), TEMPLATE, 2, "db-r1")
    assert p["metadata"]["name"] == "db-2"
    assert p["spec"]["hostname"] == "db-2" and p["spec"]["subdomain"] == "db"
    assert p["metadata"]["labels"] == {"app": "db", "statefulset.kubernetes.io/pod-name": "db-2",
                                       "apps.kubernetes.io/pod-index": "2",
                                       "controller-revision-hash": "db-r1"}
    assert p["metadata"]["ownerReferences"][0]["controller"] is True
    assert "labels" in TEMPLATE["metadata"] and "hostname" not in TEMPLATE["spec"], \
        "the template was not mutated"


def test_claims_of_scaled_away_ordinals_go_when_asked() -> None:
    claims = [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
    existing = {"data-db-0", "data-db-1", "data-db-2", "other-claim"}
    kept = run(sts(replicas=1, volumeClaimTemplates=claims), [pod(0)], claims=existing)
    assert kept.actions == []
    spec = {"volumeClaimTemplates": claims,
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete",
                                                     "whenDeleted": "Retain"}}
    # db-2 still exists: only data-db-1 (whose pod is gone) goes, and db-2 is deleted
    result = run(sts(replicas=1, **spec), [pod(0), pod(2)], claims=existing)
    assert [a.name for a in result.actions if isinstance(a, DeleteClaim)] == ["data-db-1"]
    assert deleted(result) == ["db-2"]
