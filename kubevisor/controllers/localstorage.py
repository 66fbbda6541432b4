"""The local-storage controller: the ``local`` StorageClass and the
PersistentVolumes of its claims (what a CSI external-provisioner and kube's
PV binder do, for disks that are files on the node).

It keeps StorageClass ``local`` (provisioner ``local.kubevisor.io``,
volumeBindingMode Immediate, reclaimPolicy Delete; marked the default
class only when no other class is). A PersistentVolumeClaim of a class
whose provisioner is ``local.kubevisor.io`` — or with no class at all when
such a class is the default — gets a PersistentVolume ``pvc-<claim uid>``
with ``csi: {driver: local.kubevisor.io, volumeHandle: pvc-<claim uid>}``,
the requested capacity, the claim's access and volume modes, the class's
reclaim policy and a ``claimRef``; then the PV's status, the claim's
``spec.volumeName`` and the claim's status (phase, capacity, access modes)
say Bound, in that order, each step resumable after a crash from the API
alone. When the claim is gone, a PV with reclaim policy Delete is deleted
(the node agent's :func:`kubevisor.node.vmvolumes.collect_volumes` then
removes its file), one with Retain becomes Released. A claim with no
class gets the default class's name in ``spec.storageClassName`` when it
is bound (kube's retroactive default class). Pure part: :func:`local_class`,
:func:`provisioner_class`, :func:`desired_pv`, :func:`claim_step`,
:func:`volume_step`; the shell: :class:`LocalStorageController`, started by
the manager as ``localstorage``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from kubevisor.client import (
    AlreadyExistsError,
    Client,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    SharedInformers,
)
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.runtime import Controller, Result

JSON = dict[str, Any]
Key = tuple[str, str, str]  # (kind: "sc" | "pvc" | "pv", namespace, name)

CLASS_NAME = "local"
PROVISIONER = "local.kubevisor.io"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
CLASS_KEY: Key = ("sc", "", CLASS_NAME)


def _md(obj: JSON | None) -> JSON:
    return (obj or {}).get("metadata") or {}


def _spec(obj: JSON | None) -> JSON:
    return (obj or {}).get("spec") or {}


def _status(obj: JSON | None) -> JSON:
    return (obj or {}).get("status") or {}


# -- the class ---------------------------------------------------------------

def is_default(sc: JSON) -> bool:
    ann = _md(sc).get("annotations") or {}
    return ann.get(DEFAULT_CLASS) == "true" or ann.get(BETA_DEFAULT_CLASS) == "true"


def local_class(classes: Iterable[JSON]) -> JSON | None:
    """The ``local`` StorageClass to create (None: it exists)."""
    classes = list(classes)
    if any(_md(sc).get("name") == CLASS_NAME for sc in classes):
        return None
    body: JSON = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                  "metadata": {"name": CLASS_NAME},
                  "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
                  "volumeBindingMode": "Immediate", "allowVolumeExpansion": False}
    if not any(is_default(sc) for sc in classes):
        body["metadata"]["annotations"] = {DEFAULT_CLASS: "true"}
    return body


def default_class(classes: Iterable[JSON]) -> JSON | None:
    """The default class; the newest when several claim it (as kube does)."""
    defaults = [sc for sc in classes if is_default(sc)]
    defaults.sort(key=lambda sc: (_md(sc).get("creationTimestamp") or "", _md(sc).get("name")))
    return defaults[-1] if defaults else None


def provisioner_class(pvc: JSON, classes: Iterable[JSON]) -> JSON | None:
    """The class that provisions ``pvc`` here (None: not ours to provision)."""
    classes = list(classes)
    name = _spec(pvc).get("storageClassName")
    if name is None:
        sc = default_class(classes)
    elif name == "":
        return None  # explicitly no class: only pre-made volumes
    else:
        sc = next((c for c in classes if _md(c).get("name") == name), None)
    if sc is None or sc.get("provisioner") != PROVISIONER:
        return None
    return sc


def pv_name(pvc: JSON) -> str:
    return f"pvc-{_md(pvc).get('uid', '')}"


def is_ours(pv: JSON) -> bool:
    return (_md(pv).get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER or \
        (_spec(pv).get("csi") or {}).get("driver") == PROVISIONER


def desired_pv(pvc: JSON, sc: JSON) -> JSON:
    """The PersistentVolume provisioned for ``pvc`` by class ``sc``."""
    md, spec = _md(pvc), _spec(pvc)
    name = pv_name(pvc)
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": _md(sc).get("name"),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "csi": {"driver": PROVISIONER, "volumeHandle": name},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": md.get("namespace"), "name": md.get("name"),
                         "uid": md.get("uid")},
        },
    }


# -- what to do next ---------------------------------------------------------

Action = Literal["create_pv", "pv_status", "bind_claim", "claim_status", "pv_delete",
                 "pv_released"]


@dataclass(frozen=True, slots=True)
class Step:
    """One write: ``body`` is the object (or status) to write."""

    action: Action
    body: JSON


def claim_step(pvc: JSON, pv: JSON | None, classes: Iterable[JSON]) -> Step | None:
    """The next write that brings ``pvc`` (and its PV ``pv``, None when
    absent) to Bound; None when there is nothing to do."""
    md = _md(pvc)
    if md.get("deletionTimestamp"):
        return None
    volume = _spec(pvc).get("volumeName")
    if volume and volume != pv_name(pvc):
        return None  # bound to a volume we did not make
    if pv is None:
        if volume:
            return None  # our PV is gone under a bound claim: kube leaves it Lost too
        sc = provisioner_class(pvc, classes)
        if sc is None:
            return None
        return Step("create_pv", desired_pv(pvc, sc))
    ref = _spec(pv).get("claimRef") or {}
    if ref.get("uid") != md.get("uid"):
        return None
    if _status(pv).get("phase") != "Bound":
        body = copy.deepcopy(pv)
        body["status"] = {"phase": "Bound"}
        return Step("pv_status", body)
    if not volume:
        body = copy.deepcopy(pvc)
        body["spec"]["volumeName"] = _md(pv)["name"]
        if body["spec"].get("storageClassName") is None:
            body["spec"]["storageClassName"] = _spec(pv).get("storageClassName")
        ann = body["metadata"].setdefault("annotations", {})
        ann.update({BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes",
                    STORAGE_PROVISIONER: PROVISIONER, BETA_STORAGE_PROVISIONER: PROVISIONER})
        body.pop("status", None)
        return Step("bind_claim", body)
    want = {"phase": "Bound", "accessModes": list(_spec(pv).get("accessModes") or []),
            "capacity": dict(_spec(pv).get("capacity") or {})}
    status = _status(pvc)
    if {k: status.get(k) for k in want} != want:
        body = copy.deepcopy(pvc)
        body["status"] = {**status, **want}
        return Step("claim_status", body)
    return None


def volume_step(pv: JSON, claim: JSON | None) -> Step | None:
    """What becomes of our ``pv`` given its claim as the API has it now
    (None: the claim is gone, or is another one of that name)."""
    if not is_ours(pv) or _md(pv).get("deletionTimestamp"):
        return None
    ref = _spec(pv).get("claimRef") or {}
    if claim is not None and _md(claim).get("uid") == ref.get("uid"):
        return None
    if _spec(pv).get("persistentVolumeReclaimPolicy", "Delete") == "Delete":
        return Step("pv_delete", pv)
    if _status(pv).get("phase") == "Released":
        return None
    body = copy.deepcopy(pv)
    body["status"] = {"phase": "Released"}
    return Step("pv_released", body)


# -- the shell ---------------------------------------------------------------

class LocalStorageController:
    """Watches StorageClasses, claims and volumes; provisions and binds."""

    def __init__(self, client: Client, *, workers: int = 2,
                 informers: SharedInformers | None = None) -> None:
        self.client = client
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.classes = self.informers.get("storage.k8s.io/v1", "StorageClass")
        self.claims = self.informers.get("v1", "PersistentVolumeClaim")
        self.volumes = self.informers.get("v1", "PersistentVolume")
        self.classes.add_handler(self._on_class)
        self.claims.add_handler(self._on_claim)
        self.volumes.add_handler(self._on_volume)
        self.controller: Controller[Key] = Controller("localstorage", self.reconcile,
                                                      workers=workers)

    def _on_class(self, etype: str, sc: JSON, old: JSON | None) -> None:
        self.controller.queue.add(CLASS_KEY)
        # A new or changed class (say, a new default) may concern waiting claims.
        for pvc in self.claims.items():
            if not _spec(pvc).get("volumeName"):
                self.controller.queue.add(("pvc", _md(pvc).get("namespace", ""),
                                           _md(pvc).get("name", "")))

    def _on_claim(self, etype: str, pvc: JSON, old: JSON | None) -> None:
        md = _md(pvc)
        if etype == "DELETED":
            for name in {pv_name(pvc), _spec(pvc).get("volumeName") or ""} - {""}:
                self.controller.queue.add(("pv", "", name))
            return
        self.controller.queue.add(("pvc", md.get("namespace", ""), md.get("name", "")))

    def _on_volume(self, etype: str, pv: JSON, old: JSON | None) -> None:
        if not is_ours(pv):
            return
        if etype != "DELETED":
            self.controller.queue.add(("pv", "", _md(pv).get("name", "")))
        ref = _spec(pv).get("claimRef") or {}
        if ref.get("name"):
            self.controller.queue.add(("pvc", ref.get("namespace", ""), ref["name"]))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="localstorage-informers")
            await self.informers.wait_synced(self.classes, self.claims, self.volumes)
            self.controller.queue.add(CLASS_KEY)
            group.create_task(self.controller.run(), name="localstorage-controller")

    async def reconcile(self, key: Key) -> Result | None:
        kind, namespace, name = key
        if kind == "sc":
            await self._ensure_class()
        elif kind == "pvc":
            await self._reconcile_claim(namespace, name)
        else:
            await self._reconcile_volume(name)
        return None

    async def _ensure_class(self) -> None:
        body = local_class(self.classes.items())
        if body is None:
            return
        try:
            await self.client.create(body)
        except AlreadyExistsError:
            pass

    async def _reconcile_claim(self, namespace: str, name: str) -> None:
        pvc = self.claims.get(name, namespace)
        if pvc is None:
            return
        pv = self.volumes.get(pv_name(pvc))
        # Each write's answer feeds the next step: a claim goes from Pending
        # to Bound in one reconcile, and a crash between steps resumes here.
        for _ in range(4):
            step = claim_step(pvc, pv, self.classes.items())
            if step is None:
                return
            try:
                if step.action == "create_pv":
                    try:
                        pv = await self.client.create(step.body)
                    except AlreadyExistsError:
                        pv = await self.client.get("v1", "PersistentVolume", pv_name(pvc))
                elif step.action == "pv_status":
                    pv = await self.client.update_status(step.body)
                elif step.action == "bind_claim":
                    pvc = await self.client.update(step.body)
                else:
                    pvc = await self.client.update_status(step.body)
            except (ConflictError, NotFoundError) as exc:
                raise TemporaryError(f"claim {namespace}/{name}: {step.action}: {exc}") from exc
            except ForbiddenError:
                return  # the namespace is being deleted

    async def _reconcile_volume(self, name: str) -> None:
        pv = self.volumes.get(name)
        if pv is None or not is_ours(pv):
            return
        ref = _spec(pv).get("claimRef") or {}
        if not ref.get("name"):
            return
        claim = self.claims.get(ref["name"], ref.get("namespace", ""))
        if volume_step(pv, claim) is None:
            return
        # The cache may lag behind a claim just made: ask the API before deleting.
        try:
            claim = await self.client.get("v1", "PersistentVolumeClaim", ref.get("name", ""),
                                          namespace=ref.get("namespace", ""))
        except NotFoundError:
            claim = None
        step = volume_step(pv, claim)
        if step is None:
            return
        try:
            if step.action == "pv_delete":
                await self.client.delete("v1", "PersistentVolume", name)
            else:
                await self.client.update_status(step.body)
        except NotFoundError:
            pass
        except ConflictError as exc:
            raise TemporaryError(f"volume {name}: {exc}") from exc
