"""Pure parts of the namespace controller: the step and the conditions."""

from __future__ import annotations

from kubevisor.controllers.namespace import (
    CONTENT_FAILURE,
    CONTENT_REMAINING,
    DISCOVERY_FAILURE,
    FINALIZERS_REMAINING,
    ContentReport,
    deletion_conditions,
    plan,
    without_finalizer,
)


def ns(*, deleting: bool = True, phase: str = "Terminating",
       finalizers: tuple[str, ...] = ("kubernetes",)) -> dict:
    md: dict = {"name": "n1", "uid": "u", "resourceVersion": "7"}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": md,
            "spec": {"finalizers": list(finalizers)}, "status": {"phase": phase}}


def test_plan_steps() -> None:
    assert plan(ns(deleting=False, phase="Active")) == "ignore"
    assert plan(ns(phase="Active")) == "mark-terminating"
    assert plan(ns()) == "delete-content"
    assert plan(ns(finalizers=())) == "finalized"
    assert plan(ns(finalizers=("example.com/other",))) == "finalized"


def test_without_finalizer_keeps_others_and_input() -> None:
    obj = ns(finalizers=("kubernetes", "example.com/other"))
    body = without_finalizer(obj)
    assert body["spec"]["finalizers"] == ["example.com/other"]
    assert obj["spec"]["finalizers"] == ["kubernetes", "example.com/other"]
    assert body["metadata"]["resourceVersion"] == "7"


def by_type(conds: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conds}


def test_conditions_all_ok_as_kubernetes_words_them() -> None:
    conds, changed = deletion_conditions(None, ContentReport(), "T1")
    assert changed
    got = by_type(conds)
    assert len(got) == 5
    assert all(c["status"] == "False" for c in conds)
    assert got[CONTENT_FAILURE]["reason"] == "ContentDeleted"
    assert got[CONTENT_FAILURE]["message"] == (
        "All content successfully deleted, may be waiting on finalization")
    assert got[DISCOVERY_FAILURE]["message"] == "All resources successfully discovered"
    again, changed = deletion_conditions(conds, ContentReport(), "T2")
    assert not changed and again == conds


def test_conditions_report_remaining_content_and_finalizers() -> None:
    report = ContentReport(remaining={"pods.": 2, "widgets.example.com": 1},
                           finalizers={"example.com/hold": 1})
    conds, changed = deletion_conditions(None, report, "T1")
    got = by_type(conds)
    assert got[CONTENT_REMAINING]["status"] == "True"
    assert got[CONTENT_REMAINING]["reason"] == "SomeResourcesRemain"
    assert got[CONTENT_REMAINING]["message"] == (
        "Some resources are remaining: pods. has 2 resource instances, "
        "widgets.example.com has 1 resource instances")
    assert got[FINALIZERS_REMAINING]["message"] == (
        "Some finalizers are remaining: example.com/hold in 1 resource instances")
    cleared, changed = deletion_conditions(conds, ContentReport(), "T9")
    got = by_type(cleared)
    assert changed
    assert got[CONTENT_REMAINING]["status"] == "False"
    assert got[CONTENT_REMAINING]["lastTransitionTime"] == "T9"
    assert got[CONTENT_FAILURE]["lastTransitionTime"] == "T1"  # never flipped


def test_conditions_report_failures() -> None:
    report = ContentReport(discovery_failures={"example.com/v1": "503"},
                           errors=["pods: boom"])
    got = by_type(deletion_conditions(None, report, "T1")[0])
    assert got[DISCOVERY_FAILURE]["status"] == "True"
    assert got[DISCOVERY_FAILURE]["message"].startswith(
        "Discovery failed for some groups, 1 failing:")
    assert got[CONTENT_FAILURE]["reason"] == "ContentDeletionFailed"
    assert got[CONTENT_FAILURE]["message"] == (
        "Failed to delete all resource types, 1 remaining: pods: boom")
    assert not report.clean
