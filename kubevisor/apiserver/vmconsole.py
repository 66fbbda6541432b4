"""A VM's serial console through the apiserver: the WebSocket a
VirtualMachineWebConsoleRequest's ticket opens.

URL (:func:`kubevisor.api.vmoperator.console.console_path`)::

    wss://<status.proxyAddr>/apis/vmoperator.vmware.com/v1alpha6/namespaces/NS/
        virtualmachinewebconsolerequests/NAME/console?ticket=TICKET

The ticket is the credential, as upstream's WebMKS ticket is (a browser
or a terminal that holds only the decrypted ticket can connect); no
bearer token is asked for, and one that is sent is ignored. Checked here,
before the upgrade, each refusal a ``kind: Status``: no ticket → 401;
no such request → 404; a ticket that does not match the digest the
controller stored (``vmoperator.kubevisor.io/console-ticket-sha256``,
bound to the request's and the VM's uids) → 401; past
``status.expiryTime`` → 403; the VM gone → 404, not placed → 400. Then
the VM's node is found as for pod streams (``nodeproxy``) and the socket
relayed to the agent's ``/vmConsole/<vm uid>``
(:mod:`kubevisor.node.streams.vmconsole`), authenticated with the agent
token; binary frames carry console bytes both ways. A ticket opens the
console as often as wanted until it expires; the session itself outlives
the expiry. Called by ``app.py`` for WebSocket upgrades.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubevisor.api.vmoperator import console
from kubevisor.apiserver import errors, nodeproxy, storage
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.listing import get_kv
from kubevisor.apiserver.routing import RequestInfo

JSON = dict[str, Any]


def is_console(info: RequestInfo) -> bool:
    """Whether a parsed path names a request's console."""
    return (info.kind == "resource" and info.group == console.GROUP
            and info.resource == console.PLURAL and bool(info.namespace) and bool(info.name)
            and info.subresource == console.SUBRESOURCE)


async def _read(ctx: Context, version: str, plural: str, namespace: str, name: str) -> JSON | None:
    rt = ctx.resource(console.GROUP, version, plural)
    if rt is None:
        raise errors.path_not_found()
    kv = await get_kv(ctx, storage.key(rt, namespace, name))
    return None if kv is None else storage.decode(kv)


def _expired(expiry: str, now: datetime.datetime) -> bool:
    try:
        moment = datetime.datetime.fromisoformat(expiry)
    except ValueError:
        return True
    return now >= moment


async def check_ticket(ctx: Context, info: RequestInfo, ticket: str, *,
                       now: datetime.datetime | None = None) -> JSON:
    """The VM the ticket opens, or the ApiError saying why not."""
    if not ticket:
        raise errors.ApiError(401, "Unauthorized",
                              "a console ticket is required: ?ticket=<the decrypted "
                              "status.response of this request>")
    request = await _read(ctx, info.version, console.PLURAL, info.namespace, info.name)
    if request is None:
        raise errors.not_found(console.PLURAL, info.name, console.GROUP)
    md = request["metadata"]
    status = request.get("status") or {}
    vm_name = (request.get("spec") or {}).get("name") or ""
    vm = await _read(ctx, console.VERSION, "virtualmachines", info.namespace, vm_name)
    digest = (md.get("annotations") or {}).get(console.TICKET_ANNOTATION, "")
    vm_uid = (vm or {}).get("metadata", {}).get("uid", "")
    if not console.ticket_matches(digest, md.get("uid", ""), vm_uid, ticket):
        if vm is None and digest:
            raise errors.not_found("virtualmachines", vm_name, console.GROUP)
        raise errors.unauthorized()
    now = now or datetime.datetime.now(datetime.UTC)
    if _expired(status.get("expiryTime") or "", now):
        raise errors.forbidden(
            console.PLURAL, info.name,
            f"the console ticket expired at {status.get('expiryTime')}; "
            "create a new VirtualMachineWebConsoleRequest", console.GROUP)
    assert vm is not None  # the digest binds the VM's uid
    return vm


async def relay(ctx: Context, info: RequestInfo, query: dict[str, str], scope: dict[str, Any],
                receive: Any, send: Any) -> None:
    """Check the ticket, then relay the socket to the VM's node agent.
    Raises ApiError before accepting."""
    vm = await check_ticket(ctx, info, query.get("ticket", ""))
    client = ctx.config.kubelet_client
    if client is None:
        raise errors.service_unavailable("this apiserver has no credentials for node agents")
    node_name = (vm.get("status") or {}).get("nodeName") or ""
    if not node_name:
        raise errors.bad_request(
            f"virtual machine {vm['metadata']['name']} does not have a host assigned")
    node = await _read_node(ctx, node_name)
    url = f"{nodeproxy.node_base_url(node)}/vmConsole/{vm['metadata']['uid']}"
    # the agent gets neither the ticket nor the client's subprotocols
    upstream_scope = {**scope, "query_string": b"", "subprotocols": []}
    await nodeproxy.relay_websocket(url, client, upstream_scope, receive, send)


async def _read_node(ctx: Context, name: str) -> JSON:
    rt = ctx.resource("", "v1", "nodes")
    assert rt is not None, "nodes are a built-in kind"
    kv = await get_kv(ctx, storage.key(rt, "", name))
    if kv is None:
        raise errors.not_found("nodes", name)
    return storage.decode(kv)
