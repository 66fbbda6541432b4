"""Pure tests of the pod planner and the pod status it reports."""

from __future__ import annotations

from typing import Any

from kubevisor.node import backoff
from kubevisor.node.containers import Identity, container_id, identity, observe
from kubevisor.node.plan import (
    Finalize,
    KillContainer,
    ReleaseNetwork,
    RemoveContainer,
    SetupNetwork,
    StartContainer,
    TearDown,
    plan,
)
from kubevisor.node.podstate import Blocked, PodState
from kubevisor.node.podstatus import pod_status
from kubevisor.runtime.types import ContainerState, PodNetworkInfo

UID = "0f6c1c2e-1111-2222-3333-444455556666"
NET = PodNetworkInfo(netns="/run/netns/x", ip="10.244.0.7", gateway="10.244.0.1", prefix_len=24)
T0 = 1_800_000_000.0


def pod(*, containers: tuple[str, ...] = ("app",), init: tuple[str, ...] = (),
        policy: str = "Always", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": UID, **extra},
            "spec": {"restartPolicy": policy, "nodeName": "n",
                     "initContainers": [{"name": n, "image": "busybox"} for n in init],
                     "containers": [{"name": n, "image": "busybox"} for n in containers]},
            "status": {"phase": "Pending", "qosClass": "BestEffort"}}


def cs(name: str, attempt: int, status: str, *, exit_code: int | None = None,
       started: float | None = T0, finished: float | None = None, crashes: int = 0,
       init: bool = False) -> ContainerState:
    ident = Identity(pod_uid=UID, namespace="ns", pod_name="p", name=name, attempt=attempt,
                     init=init, crashes=crashes, image="busybox",
                     image_id="127.0.0.1:5000/busybox@sha256:ab")
    return ContainerState(id=ident.id, status=status, pid=1 if status == "running" else 0,  # type: ignore[arg-type]
                          exit_code=exit_code, started_at=started, finished_at=finished,
                          labels=ident.labels())


def state(*states: ContainerState, net: PodNetworkInfo | None = NET, **kw: Any) -> PodState:
    return PodState(containers=observe(states, UID), network=net, **kw)


def test_identity_roundtrip() -> None:
    s = cs("app", 3, "running", crashes=2)
    ident = identity(s)
    assert ident is not None and ident.attempt == 3 and ident.crashes == 2
    assert s.id == container_id(UID, "app", 3)
    assert container_id(UID, "app", 3) != container_id(UID, "app", 4)
    assert len(container_id(UID, "x" * 63, 1000)) < 64


def test_backoff_sequence() -> None:
    assert [backoff.delay(n) for n in range(1, 9)] == [0, 10, 20, 40, 80, 160, 300, 300]
    quick = ContainerState(id="x", status="stopped", started_at=0, finished_at=5)
    long = ContainerState(id="x", status="stopped", started_at=0, finished_at=700)
    assert backoff.crashes_after(quick, 3) == 4
    assert backoff.crashes_after(long, 3) == 1


def test_new_pod_network_then_containers() -> None:
    assert plan(pod(), state(net=None), T0).actions == [SetupNetwork()]
    assert plan(pod(containers=("a", "b")), state(), T0).actions == [
        StartContainer("a", 0), StartContainer("b", 0)]


def test_init_containers_in_order() -> None:
    p = pod(init=("i1", "i2"))
    assert plan(p, state(), T0).actions == [StartContainer("i1", 0, init=True)]
    running = state(cs("i1", 0, "running", init=True))
    assert plan(p, running, T0).actions == []
    st = pod_status(p, running, now=T0, host_ip="10.0.0.1")
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    init_cond = next(c for c in st["conditions"] if c["type"] == "Initialized")
    assert init_cond["status"] == "False"
    assert init_cond["message"] == "containers with incomplete status: [i1 i2]"
    done1 = state(cs("i1", 0, "stopped", exit_code=0, finished=T0 + 1, init=True))
    assert plan(p, done1, T0 + 2).actions == [StartContainer("i2", 0, init=True)]
    both = state(cs("i1", 0, "stopped", exit_code=0, finished=T0 + 1, init=True),
                 cs("i2", 0, "stopped", exit_code=0, finished=T0 + 2, init=True))
    assert plan(p, both, T0 + 3).actions == [StartContainer("app", 0)]


def test_init_failure_never_fails_pod() -> None:
    p = pod(init=("i1",), policy="Never")
    s = state(cs("i1", 0, "stopped", exit_code=1, finished=T0 + 1, init=True))
    st = pod_status(p, s, now=T0 + 2, host_ip="h")
    assert st["phase"] == "Failed"
    assert plan(p, s, T0 + 2).actions == [ReleaseNetwork()]
    p2 = pod(init=("i1",), policy="Always")
    assert plan(p2, s, T0 + 2).actions == [StartContainer("i1", 1, init=True, crashes=1)]


def test_running_status_and_conditions() -> None:
    p = pod()
    s = state(cs("app", 0, "running"))
    st = pod_status(p, s, now=T0 + 5, host_ip="10.0.0.1")
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.0.7" and st["podIPs"] == [{"ip": "10.244.0.7"}]
    assert st["hostIP"] == "10.0.0.1"
    c = st["containerStatuses"][0]
    assert c["ready"] and c["started"] and c["restartCount"] == 0
    assert c["state"]["running"]["startedAt"] == "2027-01-15T08:00:00Z"
    assert c["imageID"] == "127.0.0.1:5000/busybox@sha256:ab"
    assert c["containerID"] == f"runc://{container_id(UID, 'app', 0)}"
    assert [x["type"] for x in st["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    conds = {x["type"]: x for x in st["conditions"]}
    assert {k: v["status"] for k, v in conds.items()} == {
        "PodReadyToStartContainers": "True", "Initialized": "True",
        "ContainersReady": "True", "Ready": "True", "PodScheduled": "True"}
    # Transition times stay when nothing flips.
    again = pod_status({**p, "status": st}, s, now=T0 + 50, host_ip="10.0.0.1")
    assert again == st


def test_readiness_probe_gates_ready() -> None:
    p = pod()
    p["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}}
    s = state(cs("app", 0, "running"))
    st = pod_status(p, s, now=T0, host_ip="h")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [app]"
    s2 = state(cs("app", 0, "running"), ready={container_id(UID, "app", 0): True})
    st2 = pod_status({**p, "status": st}, s2, now=T0 + 3, host_ip="h")
    ready2 = next(c for c in st2["conditions"] if c["type"] == "Ready")
    assert ready2["status"] == "True" and ready2["lastTransitionTime"] != ready["lastTransitionTime"]


def test_crash_loop_backoff() -> None:
    p = pod()
    # First crash: restarted at once, crashes=1 on the new attempt.
    s = state(cs("app", 0, "stopped", exit_code=1, finished=T0 + 1))
    assert plan(p, s, T0 + 1).actions == [StartContainer("app", 1, crashes=1)]
    # Second quick crash: 10 s back-off.
    s = state(cs("app", 0, "stopped", exit_code=1, finished=T0 + 1),
              cs("app", 1, "stopped", exit_code=2, started=T0 + 1, finished=T0 + 2, crashes=1))
    pl = plan(p, s, T0 + 3)
    assert pl.actions == [] and pl.requeue_after == 9
    st = pod_status(p, s, now=T0 + 3, host_ip="h")
    c = st["containerStatuses"][0]
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["state"]["waiting"]["message"] == (
        f"back-off 10s restarting failed container=app pod=p_ns({UID})")
    assert c["lastState"]["terminated"]["exitCode"] == 2
    assert c["lastState"]["terminated"]["reason"] == "Error"
    assert c["restartCount"] == 1
    assert st["phase"] == "Running"
    assert plan(p, s, T0 + 12).actions == [StartContainer("app", 2, crashes=2)]
    # Older attempts are removed.
    s3 = state(cs("app", 0, "stopped", exit_code=1, finished=T0 + 1),
               cs("app", 1, "stopped", exit_code=2, finished=T0 + 2, crashes=1),
               cs("app", 2, "running", crashes=2))
    assert plan(p, s3, T0 + 13).actions == [RemoveContainer(container_id(UID, "app", 0))]


def test_restart_policies() -> None:
    ok = state(cs("app", 0, "stopped", exit_code=0, finished=T0 + 1))
    bad = state(cs("app", 0, "stopped", exit_code=3, finished=T0 + 1))
    assert plan(pod(policy="OnFailure"), ok, T0 + 2).actions == [ReleaseNetwork()]
    assert pod_status(pod(policy="OnFailure"), ok, now=T0 + 2, host_ip="h")["phase"] == "Succeeded"
    assert plan(pod(policy="OnFailure"), bad, T0 + 2).actions == [
        StartContainer("app", 1, crashes=1)]
    st = pod_status(pod(policy="Never"), bad, now=T0 + 2, host_ip="h")
    assert st["phase"] == "Failed"
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert plan(pod(policy="Always"), ok, T0 + 2).actions == [StartContainer("app", 1, crashes=1)]


def test_liveness_failure_kills() -> None:
    s = state(cs("app", 0, "running"),
              unhealthy={container_id(UID, "app", 0): "Container app failed liveness probe, "
                         "will be restarted"})
    pl = plan(pod(), s, T0)
    assert pl.actions == [KillContainer("app", container_id(UID, "app", 0), 30.0,
                                        "Container app failed liveness probe, will be restarted")]


def test_blocked_image_pull() -> None:
    s = state(blocked={"app": Blocked("ImagePullBackOff", 'Back-off pulling image "busybox"',
                                      retry_at=T0 + 10)})
    pl = plan(pod(), s, T0)
    assert pl.actions == [] and pl.requeue_after == 10
    st = pod_status(pod(), s, now=T0, host_ip="h")
    assert st["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "busybox"'}
    assert st["phase"] == "Pending"
    assert plan(pod(), s, T0 + 10).actions == [StartContainer("app", 0)]


def test_deletion_and_gone() -> None:
    p = pod(deletionTimestamp="2027-01-01T00:00:00Z", deletionGracePeriodSeconds=5)
    s = state(cs("app", 0, "running"))
    assert plan(p, s, T0).actions == [KillContainer("app", container_id(UID, "app", 0), 5.0)]
    stopping = state(cs("app", 0, "running"), stopping=frozenset({container_id(UID, "app", 0)}))
    assert plan(p, stopping, T0).actions == []
    done = state(cs("app", 0, "stopped", exit_code=143, finished=T0 + 1))
    assert plan(p, done, T0).actions == [TearDown(), Finalize()]
    assert plan(None, s, T0).actions == [KillContainer("app", container_id(UID, "app", 0), 0.0)]
    assert plan(None, done, T0).actions == [TearDown()]
    assert plan(None, state(net=None), T0).actions == []


def test_created_but_never_started_is_redone() -> None:
    s = state(cs("app", 0, "created", started=None))
    assert plan(pod(), s, T0).actions == [RemoveContainer(container_id(UID, "app", 0)),
                                          StartContainer("app", 0)]


def test_status_normalization_and_pull_backoff() -> None:
    from kubevisor.node.worker import Failure, PodWorker, normalized

    assert normalized({"a": None, "b": {}, "c": [], "d": {"e": None, "f": 1}, "g": [{"h": None}]}) \
        == {"d": {"f": 1}, "g": [{}]}
    worker = PodWorker.__new__(PodWorker)  # _blocked needs no manager
    fresh = Failure("ErrImagePull", 'Failed to pull image "x": nope', since=T0, count=1, image="x")
    assert worker._blocked(fresh, T0 + 0.5).reason == "ErrImagePull"
    later = worker._blocked(fresh, T0 + 2)
    assert (later.reason, later.message, later.retry_at) == (
        "ImagePullBackOff", 'Back-off pulling image "x"', T0 + 10)
    third = Failure("ErrImagePull", "m", since=T0, count=3, image="x")
    assert worker._blocked(third, T0 + 2).retry_at == T0 + 40
    huge = Failure("ErrImagePull", "m", since=T0, count=20, image="x")
    assert worker._blocked(huge, T0 + 2).retry_at == T0 + 300


def test_image_change_replaces_container() -> None:
    p = pod(policy="Never")
    p["spec"]["containers"][0]["image"] = "busybox:2"
    running = state(cs("app", 0, "running"))
    assert plan(p, running, T0).actions == [KillContainer(
        "app", container_id(UID, "app", 0), 30.0,
        "Container app definition changed, will be restarted")]
    stopped = state(cs("app", 0, "stopped", exit_code=137, finished=T0 + 1))
    assert plan(p, stopped, T0 + 1).actions == [StartContainer("app", 1)]
