"""The Job controller's pure plan: how many pods run, back-off, limits,
deadline, Indexed mode, conditions, TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubevisor.controllers.job import (
    CreatePod,
    DeleteJob,
    DeletePod,
    build_pod,
    condition_events,
    format_indexes,
    plan,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def job(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    base = {"parallelism": 1, "completions": 1, "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "c", "image": "x"}]}}}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ns", "uid": "u"},
            "spec": {**base, **spec}, "status": status or {}}


def pod(phase: str, n: int, *, at: datetime = T0, index: int | None = None) -> dict[str, Any]:
    p = build_pod(job(), index)
    p["metadata"].update(name=f"j-{n}", uid=f"p{n}", creationTimestamp=stamp(at))
    p["status"] = {"phase": phase}
    if phase in ("Succeeded", "Failed"):
        p["status"]["containerStatuses"] = [{"name": "c", "state": {"terminated": {
            "exitCode": 0 if phase == "Succeeded" else 1, "finishedAt": stamp(at)}}}]
    return p


def creates(result: Any) -> int:
    return sum(1 for a in result.actions if isinstance(a, CreatePod))


def conditions(result: Any) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in result.status.get("conditions") or ()}


def test_parallelism_and_completions() -> None:
    assert creates(plan(job(completions=5, parallelism=2), [], now=T0)) == 2
    running = [pod("Running", 1), pod("Running", 2)]
    assert plan(job(completions=5, parallelism=2), running, now=T0).actions == []
    done = [pod("Succeeded", i) for i in range(4)]
    assert creates(plan(job(completions=5, parallelism=2), done, now=T0)) == 1
    # too many active after parallelism went down: the extra goes
    result = plan(job(completions=5, parallelism=1), running, now=T0)
    assert len([a for a in result.actions if isinstance(a, DeletePod)]) == 1


def test_work_queue_mode_stops_creating_after_a_success() -> None:
    spec = {"completions": None, "parallelism": 3}
    result = plan(job(**spec), [pod("Succeeded", 1), pod("Running", 2)], now=T0)
    assert result.actions == [] and "Complete" not in conditions(result)
    result = plan(job(**spec), [pod("Succeeded", 1)], now=T0)
    assert conditions(result)["Complete"]["status"] == "True"


def test_complete_sets_both_conditions_and_completion_time() -> None:
    result = plan(job(), [pod("Succeeded", 1)], now=T0)
    cond = conditions(result)
    assert cond["SuccessCriteriaMet"]["reason"] == cond["Complete"]["reason"] == \
        "CompletionsReached"
    assert [c["type"] for c in result.status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert result.status["completionTime"] == stamp(T0) and result.status["succeeded"] == 1


def test_back_off_doubles_from_ten_seconds_capped_at_six_minutes() -> None:
    failed = [pod("Failed", 1, at=T0)]
    assert creates(plan(job(), failed, now=T0 + timedelta(seconds=9))) == 0
    assert plan(job(), failed, now=T0 + timedelta(seconds=9)).requeue_after == 1
    assert creates(plan(job(), failed, now=T0 + timedelta(seconds=10))) == 1
    three = [pod("Failed", i, at=T0) for i in range(3)]
    assert plan(job(), three, now=T0).requeue_after == 40
    many = [pod("Failed", i, at=T0) for i in range(6)]
    assert plan(job(backoffLimit=10), many, now=T0).requeue_after == 320
    many.append(pod("Failed", 7, at=T0))
    assert plan(job(backoffLimit=10), many, now=T0).requeue_after == 360
    # a success after the failures resets the streak
    mixed = [pod("Failed", 1, at=T0), pod("Succeeded", 2, at=T0 + timedelta(seconds=5)),
             pod("Failed", 3, at=T0 + timedelta(seconds=6))]
    assert plan(job(completions=3), mixed, now=T0 + timedelta(seconds=6)).requeue_after == 10


def test_backoff_limit_target_then_failed() -> None:
    failed = [pod("Failed", 1), pod("Failed", 2), pod("Running", 3)]
    result = plan(job(backoffLimit=1), failed, now=T0)
    cond = conditions(result)
    assert cond["FailureTarget"]["reason"] == "BackoffLimitExceeded" and "Failed" not in cond
    assert [a.name for a in result.actions if isinstance(a, DeletePod)] == ["j-3"]
    assert result.status["failed"] == 3
    after = plan(job(backoffLimit=1, status=result.status), failed[:2], now=T0)
    assert conditions(after)["Failed"]["reason"] == "BackoffLimitExceeded"
    assert conditions(after)["Failed"]["message"] == "Job has reached the specified backoff limit"
    assert after.status["failed"] == 3, "failures never go down"


def test_active_deadline() -> None:
    running = [pod("Running", 1)]
    status = {"startTime": stamp(T0)}
    early = plan(job(status=status, activeDeadlineSeconds=30), running,
                 now=T0 + timedelta(seconds=10))
    assert early.actions == [] and early.requeue_after == 20
    late = plan(job(status=status, activeDeadlineSeconds=30), running,
                now=T0 + timedelta(seconds=30))
    assert conditions(late)["FailureTarget"]["reason"] == "DeadlineExceeded"
    assert [type(a) for a in late.actions] == [DeletePod]


def test_indexed_creates_missing_indexes_with_env() -> None:
    pods = [pod("Succeeded", 1, index=0), pod("Running", 2, index=2)]
    result = plan(job(completions=4, parallelism=3, completionMode="Indexed"), pods, now=T0)
    made = [a.pod for a in result.actions if isinstance(a, CreatePod)]
    assert [p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            for p in made] == ["1", "3"]
    assert made[0]["metadata"]["generateName"] == "j-1-"
    assert made[0]["spec"]["hostname"] == "j-1"
    assert made[0]["spec"]["containers"][0]["env"][-1]["name"] == "JOB_COMPLETION_INDEX"
    assert result.status["completedIndexes"] == "0"
    assert format_indexes([0, 1, 2, 4, 6, 7]) == "0-2,4,6-7"


def test_suspend_and_ttl() -> None:
    result = plan(job(suspend=True), [pod("Running", 1)], now=T0)
    assert [type(a) for a in result.actions] == [DeletePod]
    assert conditions(result)["Suspended"]["reason"] == "JobSuspended"
    resumed = plan(job(status=result.status), [], now=T0 + timedelta(seconds=5))
    assert conditions(resumed)["Suspended"]["status"] == "False"
    assert resumed.status["startTime"] == stamp(T0 + timedelta(seconds=5))
    finished = {"completionTime": stamp(T0), "conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": stamp(T0)}]}
    early = plan(job(status=finished, ttlSecondsAfterFinished=60), [], now=T0)
    assert early.actions == [] and early.requeue_after == 60
    late = plan(job(status=finished, ttlSecondsAfterFinished=60), [],
                now=T0 + timedelta(seconds=60))
    assert late.actions == [DeleteJob("u")]


def test_condition_events_only_on_transitions() -> None:
    target = plan(job(backoffLimit=0), [pod("Failed", 1), pod("Running", 2)], now=T0)
    assert condition_events({}, target.status) == []  # FailureTarget alone: no event yet
    failed = plan(job(backoffLimit=0, status=target.status), [pod("Failed", 1)], now=T0)
    assert condition_events(target.status, failed.status) == [
        ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    assert condition_events(failed.status, failed.status) == []
    done = plan(job(), [pod("Succeeded", 1)], now=T0)
    assert condition_events({}, done.status) == [("Normal", "Completed", "Job completed")]


def failed_with(n: int, code: int, *, at: datetime = T0) -> dict[str, Any]:
    p = pod("Failed", n, at=at)
    p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = code
    return p


def test_pod_failure_policy() -> None:
    policy = {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In",
                                              "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    fatal = plan(job(podFailurePolicy=policy), [failed_with(1, 42)], now=T0)
    cond = conditions(fatal)
    assert cond["Failed"]["reason"] == "PodFailurePolicy"
    assert cond["Failed"]["message"] == \
        "Container c for pod ns/j-1 failed with exit code 42 matching FailJob rule at index 1"
    ignored = plan(job(podFailurePolicy=policy, backoffLimit=0), [failed_with(1, 7)], now=T0)
    assert "Failed" not in conditions(ignored) and ignored.status["failed"] == 0
    assert creates(ignored) == 1, "an ignored failure is replaced at once"
    evicted = failed_with(2, 1)
    evicted["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True"}]
    assert plan(job(podFailurePolicy=policy, backoffLimit=0), [evicted],
                now=T0).status["failed"] == 0
    counted = plan(job(podFailurePolicy=policy, backoffLimit=0), [failed_with(3, 1)], now=T0)
    assert conditions(counted)["Failed"]["reason"] == "BackoffLimitExceeded"
