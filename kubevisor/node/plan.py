"""What one pod needs next on this host: the pure ``plan(pod, state, now)``.

Given the API's Pod (or None when it is gone from the API), what runs
(:class:`~kubevisor.node.podstate.PodState`) and the time, :func:`plan`
returns the actions to take now and when to look again, following
kubelet's computePodActions: the sandbox (network namespace) first; init
containers one at a time, in order; then every app container; restarts
by ``restartPolicy`` after the CrashLoopBackOff delay; containers that
failed a liveness or startup probe are killed; a container whose image
was changed in the spec is replaced whatever the policy; a pod being deleted has
its containers stopped within its grace period, then is torn down and
finalized (deleted with grace 0); old attempts beyond the previous one are
removed. The pod worker applies the actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubevisor.node.containers import identity, latest
from kubevisor.node.podstate import PodState
from kubevisor.node.podstatus import crash_wait, init_progress, phase, pod_status, should_restart

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SetupNetwork:
    pass


@dataclass(frozen=True, slots=True)
class StartContainer:
    name: str
    attempt: int
    init: bool = False
    crashes: int = 0


@dataclass(frozen=True, slots=True)
class KillContainer:
    name: str
    id: str
    grace: float
    reason: str = ""  # the Killing event's message, "" for none


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    id: str


@dataclass(frozen=True, slots=True)
class ReleaseNetwork:
    """The pod finished: its sandbox goes, its exited containers stay for logs."""


@dataclass(frozen=True, slots=True)
class TearDown:
    """Remove every container, the network and the pod's directory."""


@dataclass(frozen=True, slots=True)
class Finalize:
    """Delete the Pod from the API with grace 0 (kubelet's last word)."""


Action = SetupNetwork | StartContainer | KillContainer | RemoveContainer | ReleaseNetwork \
    | TearDown | Finalize


@dataclass(frozen=True, slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    #: Look again after this many seconds (None: only when something changes).
    requeue_after: float | None = None


def grace_seconds(pod: JSON) -> float:
    md = pod.get("metadata") or {}
    if md.get("deletionGracePeriodSeconds") is not None:
        return float(md["deletionGracePeriodSeconds"])
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def _all_states(state: PodState) -> list[Any]:
    return [s for items in state.containers.values() for s in items]


def _stop_everything(state: PodState, grace: float) -> list[Action]:
    return [KillContainer(name=(identity(s).name if identity(s) else ""), id=s.id, grace=grace)
            for s in _all_states(state)
            if s.status != "stopped" and s.id not in state.stopping]


def plan(pod: JSON | None, state: PodState, now: float) -> Plan:
    if pod is None:  # gone from the API: nothing may keep running
        kills = _stop_everything(state, 0.0)
        if kills or state.stopping:
            return Plan(kills)
        if state.containers or state.network is not None:
            return Plan([TearDown()])
        return Plan()
    md = pod.get("metadata") or {}
    if md.get("deletionTimestamp"):
        kills = _stop_everything(state, grace_seconds(pod))
        if kills or state.stopping:
            return Plan(kills)
        return Plan([TearDown(), Finalize()])

    spec = pod.get("spec") or {}
    actions: list[Action] = []
    init_specs = spec.get("initContainers") or []
    app_specs = spec.get("containers") or []
    known = {c["name"] for c in [*init_specs, *app_specs]}
    # Containers of names the spec does not have (cannot happen for a
    # valid pod, but an agent must not leave them running).
    for name, items in state.containers.items():
        if name not in known:
            for s in items:
                if s.status != "stopped" and s.id not in state.stopping:
                    actions.append(KillContainer(name=name, id=s.id, grace=0.0))
                elif s.status == "stopped":
                    actions.append(RemoveContainer(s.id))
    # Old attempts: keep the newest two of each container.
    for items in state.containers.values():
        actions.extend(RemoveContainer(s.id) for s in items[:-2] if s.status == "stopped")

    status = pod_status(pod, state, now=now, host_ip="")
    ph = phase(pod, state, status["containerStatuses"],
               initialized=init_progress(pod, state)[0],
               init_failed=init_progress(pod, state)[1] is not None)
    if ph in ("Succeeded", "Failed"):
        actions.extend(_stop_everything(state, grace_seconds(pod)))
        if state.network is not None and not state.stopping:
            actions.append(ReleaseNetwork())
        return Plan(actions)

    if state.network is None:
        return Plan([*actions, SetupNetwork()])

    requeue: list[float] = []

    def consider(c: JSON, *, init: bool) -> bool:
        """Plan one container; True when it is done (init: succeeded)."""
        name = c["name"]
        cur = latest(state.containers, name)
        blocked = state.blocked.get(name)
        if blocked is not None and now < blocked.retry_at:
            requeue.append(blocked.retry_at - now)
            return False
        if cur is None:
            actions.append(StartContainer(name=name, attempt=0, init=init))
            return False
        if cur.id in state.stopping:
            return False
        ident = identity(cur)
        attempt = ident.attempt if ident else 0
        if cur.status == "created":  # never started (agent died mid-start): start afresh
            actions.append(RemoveContainer(cur.id))
            actions.append(StartContainer(name=name, attempt=attempt, init=init,
                                          crashes=ident.crashes if ident else 0))
            return False
        changed = ident is not None and ident.image != c.get("image", ident.image)
        if cur.status == "running" and changed:
            actions.append(KillContainer(name=name, id=cur.id, grace=grace_seconds(pod),
                                         reason=f"Container {name} definition changed, "
                                                "will be restarted"))
            return False
        if cur.status == "stopped" and changed:  # restarted whatever the policy, at once
            actions.append(StartContainer(name=name, attempt=attempt + 1, init=init))
            return False
        if cur.status == "running":
            why = state.unhealthy.get(cur.id)
            if why is not None:
                actions.append(KillContainer(name=name, id=cur.id, grace=grace_seconds(pod),
                                             reason=why))
            return False
        if init and cur.exit_code == 0:
            return True
        if not should_restart(pod, cur, init=init):
            return False
        left, crashes = crash_wait(pod, cur, now)
        if left > 0:
            requeue.append(left)
            return False
        actions.append(StartContainer(name=name, attempt=attempt + 1, init=init,
                                      crashes=crashes))
        return False

    for c in init_specs:
        if not consider(c, init=True):
            return Plan(actions, min(requeue) if requeue else None)
    for c in app_specs:
        consider(c, init=False)
    return Plan(actions, min(requeue) if requeue else None)


def starts(actions: Sequence[Action]) -> list[StartContainer]:
    return [a for a in actions if isinstance(a, StartContainer)]
