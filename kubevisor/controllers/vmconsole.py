"""The web console request controller: answers a
VirtualMachineWebConsoleRequest with a short-lived ticket to its VM's
serial console, and deletes requests once they expire.

For a new request whose ``spec.name`` VM exists and runs on a node
(``status.nodeName``), the controller mints a random ticket and

1. writes, on the request itself, the ticket's digest (annotation
   ``vmoperator.kubevisor.io/console-ticket-sha256``, bound to the request
   and VM uids; see :mod:`kubevisor.api.vmoperator.console`), upstream's
   uuid label, and an ownerReference to the VM (the request goes with it);
2. then the status: ``response`` (the ticket encrypted with
   ``spec.publicKey``, RSA-OAEP SHA-512, base64, as upstream), ``proxyAddr``
   (the API server's ``host:port``, which serves the console WebSocket:
   :mod:`kubevisor.apiserver.vmconsole`) and ``expiryTime`` (now + 2 min).

An answered request is left alone and deleted at its expiryTime; one never
answered is deleted :data:`UNANSWERED_TTL` seconds after its creation. What
stops an answer is told as a Warning Event on the request (the kind has no
conditions): ``VirtualMachineNotFound`` and ``VirtualMachineNotPlaced``
(retried every few seconds), ``InvalidPublicKey`` (retried when the
request changes). Pure part: :func:`plan`; the shell:
:class:`VMConsoleController`, built by the manager as ``vmconsole``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from kubevisor.api.vmoperator import console
from kubevisor.client import Client, ClientError, ConflictError, NotFoundError, SharedInformers
from kubevisor.controllers.errors import PermanentError, TemporaryError
from kubevisor.controllers.runtime import Controller, Result, rfc3339, utcnow

JSON = dict[str, Any]
Key = tuple[str, str]
log = logging.getLogger(__name__)

API_VERSION = f"{console.GROUP}/{console.VERSION}"
COMPONENT = "vmconsole-controller"
#: A request nobody could answer is deleted this long after its creation.
UNANSWERED_TTL = 600.0
NOT_FOUND_RETRY = 5.0
NOT_PLACED_RETRY = 2.0


# ------------------------------------------------------------------ plan


@dataclass(frozen=True, slots=True)
class Delete:
    why: str


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


@dataclass(frozen=True, slots=True)
class Refuse:
    """Tell the user (Warning Event ``reason``) and look again after
    ``retry_after`` seconds (None: only when the request changes)."""

    reason: str
    message: str
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class Issue:
    """Mint a ticket for this VM."""

    vm: JSON


Action = Delete | Wait | Refuse | Issue | None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def plan(request: JSON | None, vm: JSON | None, *, now: datetime) -> Action:
    """What to do about ``request`` given its VM (None: not found)."""
    if request is None or (request.get("metadata") or {}).get("deletionTimestamp"):
        return None
    md = request.get("metadata") or {}
    spec = request.get("spec") or {}
    status = request.get("status") or {}
    expiry = parse_time(status.get("expiryTime"))
    if expiry is not None and now >= expiry:
        return Delete(f"its ticket expired at {status['expiryTime']}")
    if status.get("response") and status.get("proxyAddr") and expiry is not None:
        return Wait((expiry - now).total_seconds())
    created = parse_time(md.get("creationTimestamp"))
    if created is not None and (now - created).total_seconds() >= UNANSWERED_TTL:
        return Delete(f"it was not answered within {UNANSWERED_TTL:g}s")
    name = spec.get("name") or ""
    namespace = md.get("namespace") or ""
    if vm is None:
        return Refuse("VirtualMachineNotFound",
                      f'VirtualMachine "{name}" not found in namespace "{namespace}": '
                      "create it, or set spec.name to an existing VM", NOT_FOUND_RETRY)
    if not (vm.get("status") or {}).get("nodeName"):
        return Refuse("VirtualMachineNotPlaced",
                      f'VirtualMachine "{name}" does not run on a node yet (no status.nodeName); '
                      "the ticket is issued once it is placed", NOT_PLACED_RETRY)
    try:
        console.load_public_key(spec.get("publicKey") or "")
    except console.PublicKeyError as exc:
        return Refuse("InvalidPublicKey", f"{exc}; create a new request with an RSA public key "
                      "in PEM (at least 2048 bits)", None)
    return Issue(vm)


def with_ticket_metadata(request: JSON, vm: JSON, digest: str) -> JSON:
    """A copy of ``request`` carrying the ticket digest, the uuid label and
    the VM as its controlling owner."""
    body = copy.deepcopy(request)
    md = body.setdefault("metadata", {})
    md.setdefault("annotations", {})[console.TICKET_ANNOTATION] = digest
    md.setdefault("labels", {})[console.UUID_LABEL] = md.get("uid", "")
    vmd = vm["metadata"]
    md["ownerReferences"] = [{"apiVersion": vm.get("apiVersion") or API_VERSION,
                              "kind": "VirtualMachine", "name": vmd["name"],
                              "uid": vmd["uid"], "controller": True}]
    return body


def proxy_address(server_url: str) -> str:
    """``host:port`` of an API server URL (443 when the URL has none)."""
    parts = urlsplit(server_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


# ----------------------------------------------------------------- shell


class VMConsoleController:
    def __init__(self, client: Client, *, informers: SharedInformers | None = None,
                 proxy_addr: str | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        """``proxy_addr`` (default: the client's server) is what requests
        are told to connect to."""
        self.client = client
        self.proxy_addr = proxy_addr or proxy_address(client.server)
        self._clock = clock
        self._own_informers = informers is None
        self.informers = SharedInformers(client) if informers is None else informers
        self.requests = self.informers.get(API_VERSION, console.KIND)
        self.requests.add_handler(self._on_request)
        self.controller: Controller[Key] = Controller("vmconsole", self.reconcile)
        self._told: dict[Key, tuple[str, str]] = {}

    def _on_request(self, etype: str, obj: JSON, old: JSON | None) -> None:
        md = obj["metadata"]
        key = (md.get("namespace", ""), md["name"])
        if etype == "DELETED":
            self._told.pop(key, None)
        else:
            self.controller.queue.add(key)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            if self._own_informers:
                group.create_task(self.informers.run(), name="vmconsole-informers")
            await self.informers.wait_synced(self.requests)
            group.create_task(self.controller.run(), name="vmconsole-controller")

    async def reconcile(self, key: Key) -> Result | None:
        namespace, name = key
        request = self.requests.get(name, namespace)
        if request is None:
            return None
        vm = await self._vm(namespace, (request.get("spec") or {}).get("name") or "")
        action = plan(request, vm, now=self._clock())
        if action is None:
            return None
        if isinstance(action, Wait):
            return Result(requeue_after=action.seconds)
        if isinstance(action, Delete):
            await self._delete(request, action.why)
            return None
        if isinstance(action, Refuse):
            await self._tell(request, "Warning", action.reason, action.message)
            if action.retry_after is None:
                raise PermanentError(f"{namespace}/{name}: {action.message}")
            return Result(requeue_after=action.retry_after)
        return await self._issue(request, action.vm)

    async def _vm(self, namespace: str, name: str) -> JSON | None:
        if not name:
            return None
        try:
            return await self.client.get(API_VERSION, "VirtualMachine", name, namespace=namespace)
        except NotFoundError:
            return None
        except ClientError as exc:
            raise TemporaryError(f"reading VirtualMachine {namespace}/{name}: {exc}") from exc

    async def _issue(self, request: JSON, vm: JSON) -> Result:
        md = request["metadata"]
        ticket = console.new_ticket()
        digest = console.ticket_digest(md["uid"], vm["metadata"]["uid"], ticket)
        response = console.encrypt(request["spec"]["publicKey"], ticket)
        now = self._clock()
        try:
            updated = await self.client.update(with_ticket_metadata(request, vm, digest))
            updated["status"] = {
                **(updated.get("status") or {}), "response": response,
                "proxyAddr": self.proxy_addr,
                "expiryTime": rfc3339(now + timedelta(seconds=console.LIFETIME_SECONDS))}
            await self.client.update_status(updated)
        except (ConflictError, NotFoundError) as exc:
            raise TemporaryError(f"{md.get('namespace')}/{md['name']}: {exc}", delay=0.2) from exc
        self._told.pop((md.get("namespace", ""), md["name"]), None)
        await self._tell(request, "Normal", "TicketIssued",
                         f'Console ticket for VirtualMachine "{vm["metadata"]["name"]}" issued; '
                         f"valid for {console.LIFETIME_SECONDS}s")
        return Result(requeue_after=float(console.LIFETIME_SECONDS))

    async def _delete(self, request: JSON, why: str) -> None:
        md = request["metadata"]
        try:
            await self.client.delete(API_VERSION, console.KIND, md["name"],
                                     namespace=md.get("namespace"),
                                     preconditions={"uid": md["uid"]})
        except (NotFoundError, ConflictError):
            return
        except ClientError as exc:
            raise TemporaryError(f"deleting {md.get('namespace')}/{md['name']}: {exc}") from exc
        log.info("deleted VirtualMachineWebConsoleRequest %s/%s: %s", md.get("namespace"),
                 md["name"], why)

    async def _tell(self, request: JSON, type_: str, reason: str, message: str) -> None:
        """One Event per distinct (reason, message) of a request."""
        md = request["metadata"]
        key = (md.get("namespace", ""), md["name"])
        if self._told.get(key) == (reason, message):
            return
        self._told[key] = (reason, message)
        now = rfc3339(self._clock())
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{md['name']}.", "namespace": md.get("namespace")},
            "involvedObject": {"apiVersion": API_VERSION, "kind": console.KIND,
                               "name": md["name"], "namespace": md.get("namespace"),
                               "uid": md.get("uid"), "resourceVersion": md.get("resourceVersion")},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "reportingInstance": "", "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            await self.client.create(event, namespace=md.get("namespace"))
        except ClientError as exc:  # an event is best effort
            log.info("event %s for %s/%s not written: %s", reason, key[0], key[1], exc)
