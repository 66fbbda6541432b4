"""The arithmetic of a Deployment rollout, pure (kube's deployment/util).

Surge and unavailability budgets (:func:`resolve_fenceposts`: a percent
of the desired replicas, surge rounded up, unavailable rounded down, and
never both zero), revisions and the annotations a Deployment writes on
its ReplicaSets, which ReplicaSet is the new one (template equal but for
``pod-template-hash``), the size of the new ReplicaSet's next step,
proportional scaling of several active ReplicaSets, the Deployment's
status counts and its Available/Progressing conditions with kube's
reasons and messages, and which old ReplicaSets the history limit drops.
ReplicaSets are plain dicts; nothing here mutates its arguments except
the ``set_*`` helpers, which edit the copy they are given. Called by
deployment.py.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from kubevisor.controllers.conditions import find_condition, set_condition
from kubevisor.controllers.podstate import parse_time
from kubevisor.controllers.podtemplate import equal_ignore_hash
from kubevisor.controllers.runtime import rfc3339

JSON = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: Deployment annotations never copied onto its ReplicaSets.
SKIP_COPY = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                       MAX_REPLICAS, ROLLBACK_TO})

AVAILABLE = "Available"
PROGRESSING = "Progressing"
REPLICA_FAILURE = "ReplicaFailure"
# reasons, as kube's deployment/util names them
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
FAILED_RS_CREATE = "FailedRSCreate"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MAX_INT32 = 2**31 - 1


# -- the Deployment's spec ------------------------------------------------------


def desired(d: JSON) -> int:
    value = (d.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def strategy_type(d: JSON) -> str:
    return str(((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate")


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """An IntOrString (``3`` or ``"25%"``) against ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        fraction = int(text[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)


def resolve_fenceposts(surge: int | str | None, unavailable: int | str | None,
                       replicas: int) -> tuple[int, int]:
    s = scaled_value(surge, replicas, round_up=True)
    u = scaled_value(unavailable, replicas, round_up=False)
    if s == 0 and u == 0:
        u = 1  # a rollout must be able to move
    return s, u


def _rolling(d: JSON) -> JSON:
    return ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: JSON) -> int:
    if strategy_type(d) != "RollingUpdate":
        return 0
    r = _rolling(d)
    return resolve_fenceposts(r.get("maxSurge", "25%"), r.get("maxUnavailable", "25%"),
                              desired(d))[0]


def max_unavailable(d: JSON) -> int:
    if strategy_type(d) != "RollingUpdate" or desired(d) == 0:
        return 0
    r = _rolling(d)
    u = resolve_fenceposts(r.get("maxSurge", "25%"), r.get("maxUnavailable", "25%"),
                           desired(d))[1]
    return min(u, desired(d))


def has_progress_deadline(d: JSON) -> bool:
    value = (d.get("spec") or {}).get("progressDeadlineSeconds")
    return value is not None and int(value) != MAX_INT32


# -- ReplicaSets --------------------------------------------------------------------


def rs_replicas(rs: JSON | None) -> int:
    if rs is None:
        return 0
    value = (rs.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def rs_status(rs: JSON | None, field: str) -> int:
    if rs is None:
        return 0
    return int((rs.get("status") or {}).get(field) or 0)


def annotations(obj: JSON) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def revision(obj: JSON) -> int:
    try:
        return int(annotations(obj).get(REVISION, "0"))
    except ValueError:
        return 0


def created_key(rs: JSON) -> tuple[str, str]:
    md = rs.get("metadata") or {}
    return (str(md.get("creationTimestamp") or ""), str(md.get("name") or ""))


def by_creation(rss: Iterable[JSON]) -> list[JSON]:
    return sorted(rss, key=created_key)


def active(rss: Iterable[JSON | None]) -> list[JSON]:
    return [rs for rs in rss if rs is not None and rs_replicas(rs) > 0]


def find_new(d: JSON, rss: Sequence[JSON]) -> JSON | None:
    """The oldest ReplicaSet whose template is the Deployment's."""
    template = (d.get("spec") or {}).get("template")
    for rs in by_creation(rss):
        if equal_ignore_hash((rs.get("spec") or {}).get("template"), template):
            return rs
    return None


def find_old(rss: Sequence[JSON], new: JSON | None) -> list[JSON]:
    if new is None:
        return list(rss)
    name = new["metadata"]["name"]
    return [rs for rs in rss if rs["metadata"]["name"] != name]


def max_revision(rss: Iterable[JSON]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def spec_sum(rss: Iterable[JSON | None]) -> int:
    return sum(rs_replicas(rs) for rs in rss if rs is not None)


def status_sum(rss: Iterable[JSON | None], field: str) -> int:
    return sum(rs_status(rs, field) for rs in rss if rs is not None)


def pods_upper_bound(rss: Iterable[JSON | None]) -> int:
    """Pods that may exist: a ReplicaSet being scaled down still has the pods
    its status counts until they are gone (stricter than kube, which counts
    specs only, so that maxSurge bounds the pods that really exist)."""
    return sum(max(rs_replicas(rs), rs_status(rs, "replicas")) for rs in rss if rs is not None)


def available_lower_bound(rss: Iterable[JSON | None]) -> int:
    """Available pods that remain once each ReplicaSet reaches its spec (the
    ReplicaSet deletes unavailable pods first), so a stale status of one
    being scaled down never lets maxUnavailable be exceeded."""
    return sum(min(rs_replicas(rs), rs_status(rs, "availableReplicas"))
               for rs in rss if rs is not None)


# -- annotations ----------------------------------------------------------------------


def set_replicas_annotations(rs: JSON, desired_replicas: int, max_replicas: int) -> bool:
    md = rs.setdefault("metadata", {})
    ann = dict(md.get("annotations") or {})
    want = {DESIRED_REPLICAS: str(desired_replicas), MAX_REPLICAS: str(max_replicas)}
    if all(ann.get(k) == v for k, v in want.items()):
        return False
    ann.update(want)
    md["annotations"] = ann
    return True


def replicas_annotations_need_update(rs: JSON, desired_replicas: int, max_replicas: int) -> bool:
    ann = annotations(rs)
    return (ann.get(DESIRED_REPLICAS) != str(desired_replicas)
            or ann.get(MAX_REPLICAS) != str(max_replicas))


def set_new_rs_annotations(d: JSON, rs: JSON, new_revision: int, *, exists: bool) -> bool:
    """Copy the Deployment's annotations, raise the revision (keeping the
    superseded one in ``revision-history`` on a rollback), and for a new
    ReplicaSet the replica annotations. Edits ``rs``; True if it changed."""
    md = rs.setdefault("metadata", {})
    ann = dict(md.get("annotations") or {})
    changed = False
    for k, v in annotations(d).items():
        if k in SKIP_COPY or ann.get(k) == v:
            continue
        ann[k] = v
        changed = True
    old = ann.get(REVISION, "")
    try:
        old_int = int(old) if old else 0
    except ValueError:
        md["annotations"] = ann
        return changed
    if old_int < new_revision:
        ann[REVISION] = str(new_revision)
        changed = True
        if old:
            history = ann.get(REVISION_HISTORY)
            ann[REVISION_HISTORY] = f"{history},{old}" if history else old
    md["annotations"] = ann
    if not exists:
        changed = set_replicas_annotations(rs, desired(d), desired(d) + max_surge(d)) or changed
    return changed


def desired_annotation(rs: JSON) -> int | None:
    try:
        return int(annotations(rs)[DESIRED_REPLICAS])
    except (KeyError, ValueError):
        return None


# -- sizes --------------------------------------------------------------------


def new_rs_new_replicas(d: JSON, all_rss: Sequence[JSON | None], new: JSON) -> int:
    """The next size of the new ReplicaSet."""
    if strategy_type(d) != "RollingUpdate":
        return desired(d)
    max_total = desired(d) + max_surge(d)
    current = pods_upper_bound(all_rss)
    if current >= max_total:
        return rs_replicas(new)
    step = min(max_total - current, desired(d) - rs_replicas(new))
    return rs_replicas(new) + max(step, 0)


def is_saturated(d: JSON, rs: JSON | None) -> bool:
    if rs is None:
        return False
    return (rs_replicas(rs) == desired(d) and desired_annotation(rs) == desired(d)
            and rs_status(rs, "availableReplicas") == desired(d))


def find_active_or_latest(new: JSON | None, olds: Sequence[JSON]) -> JSON | None:
    if new is None and not olds:
        return None
    newest_first = list(reversed(by_creation(olds)))
    live = active([*newest_first, new])
    if not live:
        return new if new is not None else newest_first[0]
    return live[0] if len(live) == 1 else None


def _fraction(rs: JSON, d: JSON) -> int:
    if desired(d) == 0:
        return -rs_replicas(rs)
    deployment_replicas = desired(d) + max_surge(d)
    try:
        annotated = int(annotations(rs)[MAX_REPLICAS])
    except (KeyError, ValueError):
        annotated = int((d.get("status") or {}).get("replicas") or 0)
    if annotated == 0:
        return 0
    size = rs_replicas(rs) * deployment_replicas / annotated
    rounded = math.floor(size + 0.5) if size >= 0 else -math.floor(-size + 0.5)
    return int(rounded) - rs_replicas(rs)


def proportion(rs: JSON, d: JSON, to_add: int, added: int) -> int:
    if rs_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: JSON, rss: Sequence[JSON]) -> dict[str, int]:
    """New sizes of the active ReplicaSets when a Deployment in mid-rollout is
    scaled: the difference shared in proportion, leftovers to the largest."""
    live = active(rss)
    allowed = desired(d) + max_surge(d) if desired(d) > 0 else 0
    to_add = allowed - spec_sum(live)
    if to_add > 0:  # larger first, newer first among equals
        live.sort(key=lambda rs: created_key(rs), reverse=True)
        live.sort(key=rs_replicas, reverse=True)
    elif to_add < 0:  # larger first, older first among equals
        live.sort(key=created_key)
        live.sort(key=rs_replicas, reverse=True)
    sizes: dict[str, int] = {}
    added = 0
    for rs in live:
        share = proportion(rs, d, to_add, added) if to_add else 0
        sizes[rs["metadata"]["name"]] = rs_replicas(rs) + share
        added += share
    if live and to_add:
        first = live[0]["metadata"]["name"]
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes


# -- status and conditions ------------------------------------------------------------


def set_deployment_condition(conditions: Sequence[JSON] | None, *, type: str, status: str,
                             reason: str, message: str, now: str,
                             force: bool = False) -> list[JSON]:
    """kube's SetDeploymentCondition: no change when status and reason are the
    same (unless ``force``: progress refreshes lastUpdateTime); lastUpdateTime
    moves on every change, lastTransitionTime only when status flips."""
    current = find_condition(conditions, type)
    if (current is not None and not force and current.get("status") == status
            and current.get("reason") == reason):
        return list(conditions or [])
    out, _ = set_condition(conditions, type=type, status=status, reason=reason,
                           message=message, now=now)
    return [{**c, "lastUpdateTime": now} if c.get("type") == type else c for c in out]


def remove_condition(conditions: Sequence[JSON] | None, type: str) -> list[JSON]:
    return [c for c in conditions or [] if c.get("type") != type]


def calculate_status(d: JSON, all_rss: Sequence[JSON | None], new: JSON | None, *,
                     now: str) -> JSON:
    """kube's calculateStatus: counts from the ReplicaSets' statuses and the
    Available condition."""
    rss = [rs for rs in all_rss if rs is not None]
    available = status_sum(rss, "availableReplicas")
    unavailable = max(spec_sum(rss) - available, 0)
    old = d.get("status") or {}
    status: JSON = {
        "observedGeneration": int((d.get("metadata") or {}).get("generation") or 0),
        "replicas": status_sum(rss, "replicas"),
        "updatedReplicas": rs_status(new, "replicas"),
        "readyReplicas": status_sum(rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
    }
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    conditions = copy.deepcopy(old.get("conditions") or [])
    if available >= desired(d) - max_unavailable(d):
        conditions = set_deployment_condition(
            conditions, type=AVAILABLE, status="True", reason=MIN_AVAILABLE,
            message="Deployment has minimum availability.", now=now)
    else:
        conditions = set_deployment_condition(
            conditions, type=AVAILABLE, status="False", reason=MIN_UNAVAILABLE,
            message="Deployment does not have minimum availability.", now=now)
    status["conditions"] = conditions
    for field in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                  "unavailableReplicas"):
        if not status[field] and field != "replicas":
            del status[field]  # omitempty, as kube writes them
    if not status["replicas"]:
        del status["replicas"]
    return status


def _count(status: JSON, field: str) -> int:
    return int(status.get(field) or 0)


def complete(d: JSON, status: JSON) -> bool:
    want = desired(d)
    return (_count(status, "updatedReplicas") == want and _count(status, "replicas") == want
            and _count(status, "availableReplicas") == want
            and _count(status, "observedGeneration")
            >= int((d.get("metadata") or {}).get("generation") or 0))


def progressing(d: JSON, status: JSON) -> bool:
    old = d.get("status") or {}
    old_olds = _count(old, "replicas") - _count(old, "updatedReplicas")
    new_olds = _count(status, "replicas") - _count(status, "updatedReplicas")
    return (_count(status, "updatedReplicas") > _count(old, "updatedReplicas")
            or new_olds < old_olds
            or _count(status, "readyReplicas") > _count(old, "readyReplicas")
            or _count(status, "availableReplicas") > _count(old, "availableReplicas"))


def timed_out(d: JSON, status: JSON, now: datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = find_condition(status.get("conditions"), PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    deadline = int((d.get("spec") or {}).get("progressDeadlineSeconds") or 0)
    return since + timedelta(seconds=deadline) < now


def seconds_to_deadline(d: JSON, status: JSON, now: datetime) -> float | None:
    """When to look again for a rollout that may time out (None: no need)."""
    if not has_progress_deadline(d):
        return None
    cond = find_condition(status.get("conditions"), PROGRESSING)
    if cond is None or cond.get("reason") in (NEW_RS_AVAILABLE, TIMED_OUT):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return None
    deadline = int((d.get("spec") or {}).get("progressDeadlineSeconds") or 0)
    left = (since + timedelta(seconds=deadline) - now).total_seconds()
    return max(left, 0.0) + 1.0  # timestamps are whole seconds: look just after


def rollout_status(d: JSON, all_rss: Sequence[JSON | None], new: JSON | None, *,
                   now: datetime) -> JSON:
    """kube's syncRolloutStatus: calculateStatus plus the Progressing verdict
    and the ReplicaSets' ReplicaFailure."""
    stamp = rfc3339(now)
    status = calculate_status(d, all_rss, new, now=stamp)
    conditions = status["conditions"]
    if not has_progress_deadline(d):
        conditions = remove_condition(conditions, PROGRESSING)
    current = find_condition((d.get("status") or {}).get("conditions"), PROGRESSING)
    finished = (_count(status, "replicas") == _count(status, "updatedReplicas")
                and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
    if has_progress_deadline(d) and not finished:
        name = new["metadata"]["name"] if new is not None else None
        if complete(d, status):
            msg = (f'ReplicaSet "{name}" has successfully progressed.' if name
                   else f'Deployment "{d["metadata"]["name"]}" has successfully progressed.')
            conditions = set_deployment_condition(
                conditions, type=PROGRESSING, status="True", reason=NEW_RS_AVAILABLE,
                message=msg, now=stamp)
        elif progressing(d, status):
            msg = (f'ReplicaSet "{name}" is progressing.' if name
                   else f'Deployment "{d["metadata"]["name"]}" is progressing.')
            keep = current.get("lastTransitionTime") if current is not None and \
                current.get("status") == "True" else None
            conditions = set_deployment_condition(
                remove_condition(conditions, PROGRESSING), type=PROGRESSING, status="True",
                reason=RS_UPDATED, message=msg, now=stamp, force=True)
            if keep:
                conditions = [{**c, "lastTransitionTime": keep}
                              if c.get("type") == PROGRESSING else c for c in conditions]
        elif timed_out(d, {**status, "conditions": conditions}, now):
            msg = (f'ReplicaSet "{name}" has timed out progressing.' if name
                   else f'Deployment "{d["metadata"]["name"]}" has timed out progressing.')
            conditions = set_deployment_condition(
                conditions, type=PROGRESSING, status="False", reason=TIMED_OUT,
                message=msg, now=stamp)
    failure = _replica_failure(all_rss, new)
    if failure is not None:
        conditions = set_deployment_condition(
            conditions, type=REPLICA_FAILURE, status=failure.get("status", "True"),
            reason=failure.get("reason", ""), message=failure.get("message", ""), now=stamp)
    else:
        conditions = remove_condition(conditions, REPLICA_FAILURE)
    status["conditions"] = conditions
    return status


def _replica_failure(all_rss: Sequence[JSON | None], new: JSON | None) -> JSON | None:
    ordered = [new, *[rs for rs in all_rss if rs is not new]]
    for rs in ordered:
        if rs is None:
            continue
        cond = find_condition((rs.get("status") or {}).get("conditions"), REPLICA_FAILURE)
        if cond is not None:
            return cond
    return None


# -- history ------------------------------------------------------------------------


def history_to_delete(d: JSON, olds: Sequence[JSON]) -> list[JSON]:
    """Old ReplicaSets beyond ``revisionHistoryLimit``, lowest revision first,
    only those scaled to zero with no pods and a status that saw the spec."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    if limit is None:
        return []
    alive = [rs for rs in olds if not rs["metadata"].get("deletionTimestamp")]
    excess = len(alive) - int(limit)
    if excess <= 0:
        return []
    ordered = sorted(alive, key=lambda rs: (revision(rs), created_key(rs)))
    out = []
    for rs in ordered[:excess]:
        gen = int(rs["metadata"].get("generation") or 0)
        if (rs_status(rs, "replicas") or rs_replicas(rs)
                or gen > rs_status(rs, "observedGeneration")):
            continue
        out.append(rs)
    return out
