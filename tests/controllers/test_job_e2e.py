"""The workload controllers with everything real around them: the
controller manager (scheduler included) and the node agent running pods
with runc/crun from a loopback registry. A Job's pods really exit (Indexed
mode's JOB_COMPLETION_INDEX reaches the container), a StatefulSet's pods
come up in order and Ready, a DaemonSet puts one pod on the node.
Root only; slow."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import AlreadyExistsError, Client
from tests.node.e2e import HostSetup, agent, new_setup, require_drivers, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_drivers()
    from tests.support import images
    from tests.support.registry import push, running_registry

    with running_registry(tmp_path_factory.mktemp("wl-registry")) as reg:
        yield push(images.build(images.busybox_recipe()), reg, name="wl/busybox", tag="1")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[HostSetup]:
    require_drivers()
    s = new_setup(tmp_path / "host")
    try:
        yield s
    finally:
        await s.cleanup()


async def condition(api: Client, name: str, type_: str) -> dict[str, Any] | None:
    job = await api.get("batch/v1", "Job", name, namespace="default")
    for cond in job.get("status", {}).get("conditions") or ():
        if cond["type"] == type_ and cond["status"] == "True":
            return job
    return None


def job(name: str, image: str, script: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": image, "command": ["sh", "-c", script]}]}},
                **spec}}


async def test_workloads_on_a_real_node(api: Client, tmp_path: Path, setup: HostSetup,
                                        busybox: str) -> None:
    for ns in ("default", "kube-node-lease"):
        with contextlib.suppress(AlreadyExistsError):
            await api.create({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": ns}})
    async with agent(tmp_path / "kubeconfig", setup):
        # Indexed: a pod succeeds only if its index reached it
        await api.create(job("idx", busybox, '[ "$JOB_COMPLETION_INDEX" -ge 0 ] && exit 0; '
                             "exit 3", completions=2, parallelism=2,
                             completionMode="Indexed"))
        await api.create(job("bad", busybox, "exit 1", backoffLimit=0))
        await api.create({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 2, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "image": busybox,
                                         "command": ["sleep", "3600"]}]}}}})
        await api.create({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                         "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "main", "image": busybox,
                                         "command": ["sleep", "3600"]}]}}}})

        done = await wait_for(lambda: condition(api, "idx", "Complete"), timeout=120,
                              what="indexed job complete")
        assert done["status"]["completedIndexes"] == "0-1"
        ran = (await api.list("v1", "Pod", namespace="default",
                              label_selector="batch.kubernetes.io/job-name=idx"))["items"]
        exits = [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
                 for p in ran]
        assert exits == [0, 0], "the agent ran them and they saw their index"
        assert {p["spec"]["nodeName"] for p in ran} == {"node-e2e"}
        failed = await wait_for(lambda: condition(api, "bad", "Failed"), timeout=60,
                                what="failing job failed")
        reasons = {c["type"]: c.get("reason") for c in failed["status"]["conditions"]}
        assert reasons["Failed"] == "BackoffLimitExceeded"

        async def sts_ready() -> bool:
            st = (await api.get("apps/v1", "StatefulSet", "db", namespace="default"))
            return bool(st.get("status", {}).get("readyReplicas") == 2)

        await wait_for(sts_ready, timeout=120, what="statefulset ready")
        pods = {p["metadata"]["name"]: p for p in
                (await api.list("v1", "Pod", namespace="default",
                                label_selector="app=db"))["items"]}
        started = {n: p["status"]["startTime"] for n, p in pods.items()}
        assert set(started) == {"db-0", "db-1"} and started["db-0"] <= started["db-1"]

        async def ds_ready() -> bool:
            st = (await api.get("apps/v1", "DaemonSet", "agent", namespace="default"))
            s = st.get("status", {})
            return bool(s.get("desiredNumberScheduled") == 1 and s.get("numberReady") == 1)

        await wait_for(ds_ready, timeout=120, what="daemonset ready")
        for kind, name in (("StatefulSet", "db"), ("DaemonSet", "agent")):
            await api.delete("apps/v1", kind, name, namespace="default",
                             propagation_policy="Foreground")
        for name in ("idx", "bad"):
            await api.delete("batch/v1", "Job", name, namespace="default",
                             propagation_policy="Background")

        async def no_pods() -> bool:
            return not (await api.list("v1", "Pod", namespace="default"))["items"]

        await wait_for(no_pods, timeout=90, what="pods gone")
