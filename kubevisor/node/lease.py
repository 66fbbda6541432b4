"""The node's heartbeat Lease in ``kube-node-lease`` (pure builders).

kubelet renews ``coordination.k8s.io/v1`` Lease ``<node>`` every 10 s
(a quarter of ``leaseDurationSeconds`` 40), owned by its Node so it goes
with it. :func:`lease_object` builds the first one, :func:`renewed` the
next. The loop that applies them is in :mod:`kubevisor.node.registration`.
"""

from __future__ import annotations

import copy
from typing import Any

from kubevisor.node.clock import micro
from kubevisor.node.config import LEASE_NAMESPACE

JSON = dict[str, Any]


def lease_object(node_name: str, *, node_uid: str | None, duration: int, now: float) -> JSON:
    md: JSON = {"name": node_name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                  "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration,
                     "renewTime": micro(now)}}


def renewed(lease: JSON, node_name: str, *, node_uid: str | None, duration: int,
            now: float) -> JSON:
    """``lease`` (never mutated) renewed at ``now`` by this node."""
    body = copy.deepcopy(lease)
    spec = body.setdefault("spec", {})
    spec.update(holderIdentity=node_name, leaseDurationSeconds=duration, renewTime=micro(now))
    md = body.setdefault("metadata", {})
    if node_uid and not md.get("ownerReferences"):
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                  "uid": node_uid}]
    return body
