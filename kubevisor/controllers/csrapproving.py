"""The CSR approver: approves node certificate requests automatically, as
kube-controller-manager's csrapproving controller does for node clients
(and as kubelet-serving approvers such as kubelet-csr-approver do).

Approved (condition ``Approved``, reason ``AutoApproved``, through the
``approval`` subresource):

* ``kubernetes.io/kube-apiserver-client-kubelet`` requests made with a
  bootstrap token (requester in ``system:bootstrappers``) or by the node
  itself renewing (requester ``system:node:<name>`` = the subject CN);
* ``kubernetes.io/kubelet-serving`` requests made by the node the
  certificate names (requester = subject CN, in ``system:nodes``);

when the request meets the signer's rules (:mod:`.csrrules`). Requests
for other signers, or from other requesters, are left for a person
(``kubectl certificate approve``). Pure part: :func:`decide`; the shell:
:class:`CSRApprovingController`, started by the manager.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from kubevisor.client import Client, ConflictError, NotFoundError, SharedInformers
from kubevisor.controllers import csrrules
from kubevisor.controllers.csrrules import BadRequest
from kubevisor.controllers.errors import TemporaryError
from kubevisor.controllers.runtime import Controller, Result

JSON = dict[str, Any]
Key = tuple[str, str]
API_VERSION = "certificates.k8s.io/v1"
KIND = "CertificateSigningRequest"

CLIENT_MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."
SELF_CLIENT_MESSAGE = "Auto approving self kubelet client certificate after SubjectAccessReview."
SERVING_MESSAGE = "Auto approving kubelet serving certificate: the node asks for its own."


def decide(csr: JSON) -> str | None:
    """The approval message for ``csr``, or None to leave it alone."""
    if csrrules.is_approved(csr) or csrrules.is_denied_or_failed(csr):
        return None
    spec = csr.get("spec") or {}
    try:
        parsed = csrrules.check(csr)
    except BadRequest:
        return None
    username, groups = spec.get("username") or "", spec.get("groups") or []
    if spec.get("signerName") == csrrules.CLIENT_KUBELET:
        if csrrules.BOOTSTRAPPERS in groups:
            return CLIENT_MESSAGE
        if username == parsed.common_name:
            return SELF_CLIENT_MESSAGE
        return None
    if username == parsed.common_name and csrrules.NODES_GROUP in groups:
        return SERVING_MESSAGE
    return None


class CSRApprovingController:
    def __init__(self, client: Client, *, informers: SharedInformers | None = None) -> None:
        self.client = client
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.csrs = self.informers.get(API_VERSION, KIND)
        self.csrs.add_handler(self._on_csr)
        self.controller: Controller[Key] = Controller("csrapproving", self.reconcile)

    def _on_csr(self, etype: str, csr: JSON, old: JSON | None) -> None:
        if etype != "DELETED":
            self.controller.queue.add(("", csr["metadata"]["name"]))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="csrapproving-informers")
            await self.informers.wait_synced(self.csrs)
            group.create_task(self.controller.run(), name="csrapproving-controller")

    async def reconcile(self, key: Key) -> Result | None:
        csr = self.csrs.get(key[1])
        if csr is None:
            return None
        message = decide(csr)
        if message is None:
            return None
        body = copy.deepcopy(csr)
        status = body.setdefault("status", {})
        status["conditions"] = [*(status.get("conditions") or []), {
            "type": "Approved", "status": "True", "reason": "AutoApproved", "message": message}]
        try:
            await self.client.update(body, subresource="approval")
        except (ConflictError, NotFoundError) as exc:
            raise TemporaryError(f"csr {key[1]}: {exc}", delay=0.2) from exc
        return None
