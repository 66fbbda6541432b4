"""The pods a workload controls, read fresh from the API and claimed.

:func:`controlled_pods` lists the pods of the owner's namespace that its
selector matches, adopts the orphans among them (no controller reference,
not being deleted), and returns the ones it now controls (kube's
ControllerRefManager, through :mod:`.ownership`). Listing from the API
rather than a cache means a pass never acts on a view older than its own
last writes. A pod whose labels were changed so that it no longer matches
is not listed, hence not released (kube would drop our reference): it is
no longer counted and is replaced, and keeps our owner reference. Called
by the StatefulSet, DaemonSet and Job shells.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api.selectors import label_selector_from_spec
from kubevisor.client import Client
from kubevisor.controllers import ownership

JSON = dict[str, Any]


async def controlled_pods(client: Client, owner: JSON, selector: JSON | None) -> list[JSON]:
    md = owner["metadata"]
    sel = label_selector_from_spec(selector)
    listed = await client.list("v1", "Pod", namespace=md["namespace"], label_selector=str(sel))
    items = listed.get("items") or []
    claim = ownership.claim(owner, sel, items)
    pods = list(claim.owned)
    for pod in claim.adopt:
        adopted = await ownership.adopt(client, owner, pod)
        if adopted is not None:
            adopted.setdefault("apiVersion", "v1")
            adopted.setdefault("kind", "Pod")
            pods.append(adopted)
    return pods
