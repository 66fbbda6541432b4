"""A workload's ControllerRevisions, kept through the API.

:func:`load` lists the revisions a StatefulSet or DaemonSet controls,
:func:`ensure` makes sure its current template has one (creating it, or,
when the template went back to an older revision, renumbering that one as
the newest, as kube does on a roll back), :func:`prune` deletes those
beyond ``revisionHistoryLimit`` that no pod uses. What a revision holds
and how it is named: :mod:`.revisions` (pure). Called by statefulset.py
and daemonset.py.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from kubevisor.client import AlreadyExistsError, Client, NotFoundError
from kubevisor.controllers import podstate, revisions
from kubevisor.controllers.errors import TemporaryError

JSON = dict[str, Any]


async def load(client: Client, owner: JSON) -> dict[str, JSON]:
    """name -> ControllerRevision, for those ``owner`` controls."""
    md = owner["metadata"]
    listed = await client.list("apps/v1", "ControllerRevision", namespace=md["namespace"])
    return {r["metadata"]["name"]: r
            for r in podstate.controlled_by(listed.get("items") or [], md["uid"])}


async def ensure(client: Client, owner: JSON, template: JSON, revs: dict[str, JSON]) -> str:
    """The name of the revision of ``template`` (``revs`` is updated)."""
    name = revisions.revision_name(owner, template)
    number = revisions.next_number(revs.values())
    existing = revs.get(name)
    if existing is None:
        try:
            revs[name] = await client.create(revisions.build_revision(owner, template, number))
        except AlreadyExistsError as exc:
            raise TemporaryError(f"revision {name} exists but is not ours") from exc
    elif int(existing.get("revision") or 0) != number - 1:
        body = copy.deepcopy(existing)
        body.setdefault("apiVersion", "apps/v1")
        body.setdefault("kind", "ControllerRevision")
        body["revision"] = number
        revs[name] = await client.update(body)
    return name


async def prune(client: Client, owner: JSON, revs: dict[str, JSON], *,
                in_use: Iterable[str]) -> None:
    keep = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
    for stale in revisions.stale_revisions(revs.values(), keep=keep, in_use=set(in_use)):
        try:
            await client.delete("apps/v1", "ControllerRevision", stale,
                                namespace=owner["metadata"]["namespace"])
        except NotFoundError:
            pass
