"""The Job controller against a real apiserver; the test plays the node
agent (reports pods Succeeded/Failed through the status subresource)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client, NotFoundError
from tests.controllers.nodeplay import eventually, kubectl, namespace, pods, set_phase

NS = "jobs"


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox", "command": ["true"]}]}}, **spec}}


async def active(api: Client, name: str) -> dict[str, Any]:
    return {n: p for n, p in (await pods(api, NS, f"batch.kubernetes.io/job-name={name}")).items()
            if p.get("status", {}).get("phase") in ("Pending", "Running")
            and not p["metadata"].get("deletionTimestamp")}


async def count_active(api: Client, name: str, n: int) -> dict[str, Any] | None:
    got = await active(api, name)
    return got if len(got) == n else None


async def condition(api: Client, name: str, type_: str) -> dict[str, Any] | None:
    j = await api.get("batch/v1", "Job", name, namespace=NS)
    for cond in j.get("status", {}).get("conditions") or ():
        if cond["type"] == type_ and cond["status"] == "True":
            return j
    return None


async def test_completions_and_parallelism(api: Client) -> None:
    await namespace(api, NS)
    created = await api.create(job("pi", completions=3, parallelism=2))
    uid = created["metadata"]["uid"]
    assert created["spec"]["selector"]["matchLabels"] == {
        "batch.kubernetes.io/controller-uid": uid}
    first = await eventually(lambda: count_active(api, "pi", 2), what="two running at once")
    pod = next(iter(first.values()))
    labels = pod["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "pi" and labels["job-name"] == "pi"
    assert labels["batch.kubernetes.io/controller-uid"] == uid
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "Job" and ref["controller"] and ref["blockOwnerDeletion"]
    await asyncio.sleep(0.3)
    assert len(await active(api, "pi")) == 2
    for name in first:
        await set_phase(api, NS, name, "Succeeded", exit_code=0)
    # only one more is needed for 3 completions
    last = await eventually(lambda: count_active(api, "pi", 1), what="the third pod")
    await asyncio.sleep(0.3)
    assert len(await active(api, "pi")) == 1
    j = await api.get("batch/v1", "Job", "pi", namespace=NS)
    assert j["status"]["succeeded"] == 2 and j["status"]["active"] == 1
    assert j["status"]["startTime"]
    await set_phase(api, NS, next(iter(last)), "Succeeded", exit_code=0)
    done = await eventually(lambda: condition(api, "pi", "Complete"), what="Complete")
    types = [c["type"] for c in done["status"]["conditions"]]
    assert types.index("SuccessCriteriaMet") < types.index("Complete")
    assert done["status"]["succeeded"] == 3 and done["status"]["completionTime"]
    assert done["status"].get("active", 0) == 0


@pytest.mark.slow
async def test_backoff_limit_fails_the_job(api: Client) -> None:
    await namespace(api, NS)
    await api.create(job("flaky", backoffLimit=1))
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    failed_at = None
    for _ in range(2):
        current = await eventually(lambda: count_active(api, "flaky", 1), what="a pod")
        if failed_at is not None:  # kube's back-off: 10 s after the first failure
            assert loop.time() - failed_at >= 8.5, "replaced before the back-off"
        name = next(iter(current))
        assert name not in seen
        seen.add(name)
        await set_phase(api, NS, name, "Failed", exit_code=1)
        failed_at = loop.time()
    failed = await eventually(lambda: condition(api, "flaky", "Failed"), timeout=60,
                              what="Failed")
    cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert cond["reason"] == "BackoffLimitExceeded"
    assert cond["message"] == "Job has reached the specified backoff limit"
    types = [c["type"] for c in failed["status"]["conditions"]]
    assert types.index("FailureTarget") < types.index("Failed")
    assert failed["status"]["failed"] == 2
    await asyncio.sleep(0.3)
    assert not await active(api, "flaky"), "a failed job started another pod"

    async def events() -> set[tuple[str, str]] | None:
        listed = await api.list("v1", "Event", namespace=NS,
                                field_selector="involvedObject.name=flaky")
        got = {(e["reason"], e["type"]) for e in listed["items"]}
        return got if ("BackoffLimitExceeded", "Warning") in got else None

    got = await eventually(events, what="events")
    assert ("SuccessfulCreate", "Normal") in got


@pytest.mark.slow
async def test_indexed_completion_mode(api: Client) -> None:
    await namespace(api, NS)
    await api.create(job("idx", completions=3, parallelism=3, completionMode="Indexed"))
    running = await eventually(lambda: count_active(api, "idx", 3), what="three indexed pods")
    by_index = {}
    for name, pod in running.items():
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == index
        assert name.startswith(f"idx-{index}-")
        assert pod["spec"]["hostname"] == f"idx-{index}"
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        by_index[index] = name
    assert set(by_index) == {"0", "1", "2"}
    await set_phase(api, NS, by_index["1"], "Succeeded", exit_code=0)
    await set_phase(api, NS, by_index["0"], "Failed", exit_code=1)

    async def index0_again() -> Any:
        return [p for p in (await active(api, "idx")).values()
                if p["metadata"]["annotations"][
                    "batch.kubernetes.io/job-completion-index"] == "0"]

    await eventually(index0_again, timeout=40, what="index 0 re-created after the back-off")
    j = await api.get("batch/v1", "Job", "idx", namespace=NS)
    assert j["status"]["completedIndexes"] == "1"
    for name in await active(api, "idx"):
        await set_phase(api, NS, name, "Succeeded", exit_code=0)
    done = await eventually(lambda: condition(api, "idx", "Complete"), what="Complete")
    assert done["status"]["completedIndexes"] == "0-2" and done["status"]["succeeded"] == 3


async def test_deadline_suspend_and_ttl(api: Client) -> None:
    await namespace(api, NS)
    await api.create(job("slow", activeDeadlineSeconds=1, parallelism=2, completions=4))
    # (its 2 pods may come and go within the 1 s deadline: no wait on them)
    failed = await eventually(lambda: condition(api, "slow", "Failed"), timeout=20,
                              what="deadline")
    cond = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert cond["reason"] == "DeadlineExceeded"
    assert not await active(api, "slow")

    await api.create(job("paused", suspend=True))
    await eventually(lambda: condition(api, "paused", "Suspended"), what="Suspended")
    assert not await active(api, "paused")
    await api.patch("batch/v1", "Job", "paused", {"spec": {"suspend": False}}, namespace=NS)
    await eventually(lambda: count_active(api, "paused", 1), what="resumed")
    await api.patch("batch/v1", "Job", "paused", {"spec": {"suspend": True}}, namespace=NS)

    async def none_active() -> bool:
        return not await active(api, "paused")

    await eventually(none_active, what="suspended again")

    await api.create(job("brief", ttlSecondsAfterFinished=0))
    [name] = await eventually(lambda: count_active(api, "brief", 1))
    await set_phase(api, NS, name, "Succeeded", exit_code=0)

    async def job_gone() -> bool:
        try:
            await api.get("batch/v1", "Job", "brief", namespace=NS)
        except NotFoundError:
            return True
        return False

    await eventually(job_gone, what="deleted after its TTL")


async def test_kubectl_create_wait_and_get(api: Client, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    await namespace(api, NS)
    resources = await kubectl(kubeconfig, "api-resources")
    rows = {line.split()[0]: line.split()[1:] for line in resources.splitlines()[1:]}
    assert rows["jobs"] == ["batch/v1", "true", "Job"], rows.get("jobs")
    assert rows["controllerrevisions"] == ["apps/v1", "true", "ControllerRevision"]
    await kubectl(kubeconfig, "-n", NS, "create", "job", "hello", "--image=busybox", "--",
                  "true")
    wait = asyncio.create_task(kubectl(kubeconfig, "-n", NS, "wait", "--for=condition=complete",
                                       "job/hello", "--timeout=60s"))
    [(name, created)] = (await eventually(lambda: count_active(api, "hello", 1))).items()
    # kubectl sent the Job as protobuf: the template came through whole
    container = created["spec"]["containers"][0]
    assert (container["image"], container["command"]) == ("busybox", ["true"])
    assert created["spec"]["restartPolicy"] == "Never"
    table = await kubectl(kubeconfig, "-n", NS, "get", "jobs")
    assert table.splitlines()[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table.splitlines()[1].split()[:3] == ["hello", "Running", "0/1"], table
    await set_phase(api, NS, name, "Succeeded", exit_code=0)
    assert "job.batch/hello condition met" in await wait
    table = await kubectl(kubeconfig, "-n", NS, "get", "jobs", "hello")
    assert table.splitlines()[1].split()[:3] == ["hello", "Complete", "1/1"], table

    async def described() -> str | None:
        out = await kubectl(kubeconfig, "-n", NS, "describe", "job", "hello")
        return out if "Completed" in out else None

    out = await eventually(described, what="describe shows the events")
    assert "Pods Statuses:    0 Active (0 Ready) / 1 Succeeded / 0 Failed" in out, out
    assert "SuccessfulCreate" in out, out
