"""A pod's status from what runs on the host, as kubelet reports it (pure).

:func:`pod_status` gives phase (kubelet's getPhase rules), conditions
(PodReadyToStartContainers, Initialized, ContainersReady, Ready,
PodScheduled; ``lastTransitionTime`` moves only on a flip),
initContainerStatuses and containerStatuses (state, lastState, ready,
started, restartCount, image, imageID, containerID), podIP(s), hostIP(s),
startTime, qosClass. :func:`waiting_reasons` is shared with the planner.
Called by the pod worker, which writes the result through ``pods/status``
only when :func:`status_differs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubevisor.node import backoff
from kubevisor.node.clock import rfc3339
from kubevisor.node.containers import identity, latest, previous
from kubevisor.node.podstate import PodState
from kubevisor.runtime.types import ContainerState

JSON = dict[str, Any]


def spec_of(pod: JSON) -> JSON:
    return pod.get("spec") or {}


def restart_policy(pod: JSON) -> str:
    return str(spec_of(pod).get("restartPolicy") or "Always")


def pod_label(pod: JSON) -> str:
    md = pod.get("metadata") or {}
    return f"{md.get('name')}_{md.get('namespace')}({md.get('uid')})"


def _terminated(state: ContainerState, prefix: str) -> JSON:
    ident = identity(state)
    code = state.exit_code if state.exit_code is not None else 137
    reason = state.reason or ("Completed" if code == 0 else "Error")
    out: JSON = {"exitCode": code, "reason": reason,
                 "startedAt": rfc3339(state.started_at) if state.started_at else None,
                 "finishedAt": rfc3339(state.finished_at) if state.finished_at else None,
                 "containerID": f"{prefix}://{state.id}"}
    if ident is None:
        out.pop("containerID")
    return out


def succeeded(state: ContainerState | None) -> bool:
    return state is not None and state.status == "stopped" and state.exit_code == 0


def init_progress(pod: JSON, state: PodState) -> tuple[bool, str | None]:
    """(all init containers succeeded, the name of one that failed for good)."""
    policy = restart_policy(pod)
    for c in spec_of(pod).get("initContainers") or []:
        cur = latest(state.containers, c["name"])
        if succeeded(cur):
            continue
        if (cur is not None and cur.status == "stopped" and policy == "Never"
                and cur.id not in state.stopping):
            return False, c["name"]
        return False, None
    return True, None


def crash_wait(pod: JSON, cur: ContainerState, now: float) -> tuple[float, int]:
    """(seconds still to wait before restarting ``cur``, crash count after it)."""
    ident = identity(cur)
    crashes = backoff.crashes_after(cur, ident.crashes if ident else 0)
    wait = backoff.delay(crashes)
    until = (cur.finished_at or now) + wait
    return max(until - now, 0.0), crashes


def should_restart(pod: JSON, cur: ContainerState, *, init: bool) -> bool:
    policy = restart_policy(pod)
    if init:
        return policy != "Never" and cur.exit_code != 0
    return policy == "Always" or (policy == "OnFailure" and cur.exit_code != 0)


def waiting_reasons(pod: JSON, state: PodState, now: float) -> dict[str, tuple[str, str]]:
    """Container name -> (reason, message) for containers kept waiting by a
    back-off or a failure the worker recorded."""
    out: dict[str, tuple[str, str]] = {}
    for name, blocked in state.blocked.items():
        out[name] = (blocked.reason, blocked.message)
    spec = spec_of(pod)
    for c, init in [*((c, True) for c in spec.get("initContainers") or []),
                    *((c, False) for c in spec.get("containers") or [])]:
        cur = latest(state.containers, c["name"])
        if c["name"] in out or cur is None or cur.status != "stopped":
            continue
        if cur.id in state.stopping or not should_restart(pod, cur, init=init):
            continue
        left, crashes = crash_wait(pod, cur, now)
        if left > 0:
            out[c["name"]] = ("CrashLoopBackOff",
                              f"back-off {int(backoff.delay(crashes))}s restarting failed "
                              f"container={c['name']} pod={pod_label(pod)}")
    return out


def _container_status(pod: JSON, c: JSON, state: PodState, *, init: bool, initialized: bool,
                      waiting: Mapping[str, tuple[str, str]], prefix: str) -> JSON:
    name = c["name"]
    cur = latest(state.containers, name)
    prev = previous(state.containers, name)
    ident = identity(cur) if cur else None
    out: JSON = {"name": name, "image": c.get("image", ""), "imageID": "",
                 "ready": False, "restartCount": ident.attempt if ident else 0,
                 "started": False, "state": {}, "lastState": {}}
    if ident and ident.image_id:
        out["imageID"] = ident.image_id
    if cur is not None:
        out["containerID"] = f"{prefix}://{cur.id}"
    if name in waiting:
        reason, message = waiting[name]
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message
                                                          else {})}}
        if cur is not None and cur.status == "stopped":
            out["lastState"] = {"terminated": _terminated(cur, prefix)}
            return out
    elif cur is None or cur.status == "created" or (
            cur.status == "stopped" and ident is not None
            and ident.image != c.get("image", ident.image)):  # being replaced
        reason = "PodInitializing" if not init and not initialized else "ContainerCreating"
        out["state"] = {"waiting": {"reason": reason}}
    elif cur.status == "running":
        out["state"] = {"running": {"startedAt": rfc3339(cur.started_at or 0)}}
        has_startup = bool(c.get("startupProbe"))
        started = not has_startup or cur.id in state.started
        out["started"] = started
        if not init:
            ready = state.ready.get(cur.id, True) if c.get("readinessProbe") is None \
                else state.ready.get(cur.id, False)
            out["ready"] = bool(started and ready)
    else:
        out["state"] = {"terminated": _terminated(cur, prefix)}
        if init and cur.exit_code == 0:
            out["ready"] = True
    if prev is not None and prev.status == "stopped":
        out["lastState"] = {"terminated": _terminated(prev, prefix)}
    return out


def phase(pod: JSON, state: PodState, statuses: list[JSON], *, initialized: bool,
          init_failed: bool) -> str:
    """kubelet's getPhase over the computed container statuses."""
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
    waiting = running = stopped = succeeded_n = 0
    for st in statuses:
        s = st["state"]
        if "running" in s:
            running += 1
        elif "terminated" in s:
            stopped += 1
            if s["terminated"]["exitCode"] == 0:
                succeeded_n += 1
        elif "terminated" in st.get("lastState", {}):
            stopped += 1
            if st["lastState"]["terminated"]["exitCode"] == 0:
                succeeded_n += 1
        else:
            waiting += 1
    policy = restart_policy(pod)
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded_n:
            return "Succeeded"
        if policy == "OnFailure":
            return "Running"
        return "Failed"
    return "Pending"


def _condition(old: Mapping[str, JSON], type_: str, status: str, now: str,
               reason: str | None = None, message: str | None = None) -> JSON:
    prev = old.get(type_) or {}
    out: JSON = {"type": type_, "status": status, "lastProbeTime": None,
                 "lastTransitionTime": prev.get("lastTransitionTime")
                 if prev.get("status") == status and prev.get("lastTransitionTime") else now}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def pod_status(pod: JSON, state: PodState, *, now: float, host_ip: str,
               runtime_name: str = "runc") -> JSON:
    """The whole status kubelet would write for ``pod`` at ``now``."""
    old: JSON = pod.get("status") or {}
    spec = spec_of(pod)
    stamp = rfc3339(now)
    initialized, failed_init = init_progress(pod, state)
    waiting = waiting_reasons(pod, state, now)
    inits = [_container_status(pod, c, state, init=True, initialized=initialized,
                               waiting=waiting, prefix=runtime_name)
             for c in spec.get("initContainers") or []]
    apps = [_container_status(pod, c, state, init=False, initialized=initialized,
                              waiting=waiting, prefix=runtime_name)
            for c in spec.get("containers") or []]
    ph = phase(pod, state, apps, initialized=initialized, init_failed=failed_init is not None)
    old_conds = {c.get("type"): c for c in old.get("conditions") or []}
    terminal = ph in ("Succeeded", "Failed")
    conds = [_condition(old_conds, "PodReadyToStartContainers",
                        "True" if state.network is not None and not terminal else "False",
                        stamp)]
    if initialized:
        conds.append(_condition(old_conds, "Initialized", "True", stamp))
    else:
        pending = [s["name"] for s in inits if not s["ready"]]
        conds.append(_condition(old_conds, "Initialized", "False", stamp,
                                "ContainersNotInitialized",
                                f"containers with incomplete status: [{' '.join(pending)}]"))
    unready = [s["name"] for s in apps if not s["ready"]]
    if not unready:
        ready_args: tuple[str, ...] = ("True",)
    elif ph == "Succeeded":
        ready_args = ("False", "PodCompleted")
    elif ph == "Failed":
        ready_args = ("False", "PodFailed")
    else:
        ready_args = ("False", "ContainersNotReady",
                      f"containers with unready status: [{' '.join(unready)}]")
    if not initialized and ph == "Pending":
        ready_args = ("False", "ContainersNotInitialized",
                      f"containers with incomplete status: "
                      f"[{' '.join(s['name'] for s in inits if not s['ready'])}]")
    # kubelet's order: PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled.
    conds.append(_condition(old_conds, "Ready", ready_args[0], stamp, *ready_args[1:]))
    conds.append(_condition(old_conds, "ContainersReady", ready_args[0], stamp, *ready_args[1:]))
    sched = old_conds.get("PodScheduled") or _condition(old_conds, "PodScheduled", "True", stamp)
    conds.append(sched)
    status: JSON = {
        "phase": ph,
        "conditions": conds,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime") or stamp,
        "containerStatuses": apps,
        "qosClass": old.get("qosClass") or "BestEffort",
    }
    if inits:
        status["initContainerStatuses"] = inits
    ip = state.network.ip if state.network is not None else old.get("podIP")
    if spec.get("hostNetwork"):
        ip = host_ip
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return status


def status_differs(old: JSON | None, new: JSON) -> bool:
    return (old or {}) != new
