"""The ``pods/<name>/binding`` subresource (and the legacy ``bindings``
collection): how a scheduler assigns a pod to a node.

A POST of a v1 ``Binding`` (``target: {kind: Node, name: N}``) sets the
pod's ``spec.nodeName`` to N and its ``PodScheduled`` condition to True, as
kube-apiserver's BindingREST does: in one compare-and-swap on the pod's
revision (a lost race re-reads and re-checks, so of two concurrent
bindings exactly one wins and the other gets 409), refused with 409 when
the pod already has a node, is being deleted or still has scheduling
gates; the Binding's annotations are copied onto the pod and its
``metadata.uid``/``resourceVersion`` are preconditions. The answer is a
``Status`` Success with code 201. The write goes straight to the store
(no managedFields entry, as upstream's GuaranteedUpdate). Called by the
app for ``POST .../pods/NAME/binding`` and ``POST .../bindings``.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api.kinds import ResourceType
from kubevisor.api.meta import now_rfc3339
from kubevisor.apiserver import errors, storage
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, Response, decode_body, dump
from kubevisor.apiserver.listing import get_kv
from kubevisor.apiserver.resources import is_dry_run
from kubevisor.apiserver.routing import RequestInfo
from kubevisor.store import errors as store_errors

JSON = dict[str, Any]

_MAX_RETRIES = 16
_RESOURCE = "pods/binding"


def _check_binding(body: Any, namespace: str) -> JSON:
    """The Binding in ``body``, its kind, version, namespace and target checked."""
    if not isinstance(body, dict):
        raise errors.bad_request("the object provided is unrecognized (must be of type Binding)")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if api_version and api_version != "v1":
        raise errors.bad_request(f"the API version in the data ({api_version}) does not match "
                                 "the expected API version (v1)")
    if kind and kind != "Binding":
        raise errors.bad_request("the object provided is unrecognized (must be of type Binding): "
                                 f'kind "{kind}" does not match')
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        body["metadata"] = meta
    given = meta.get("namespace")
    if given and given != namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request")
    target = body.get("target")
    if not isinstance(target, dict):
        target = {}
    causes = []
    target_kind = target.get("kind") or ""
    if target_kind and target_kind != "Node":
        causes.append(errors.field_cause(
            "target.kind", "FieldValueNotSupported",
            f'Unsupported value: "{target_kind}": supported values: "Node", "<empty>"'))
    if not target.get("name") or not isinstance(target.get("name"), str):
        causes.append(errors.required("target.name"))
    if causes:
        raise errors.invalid("Binding", str(meta.get("name") or ""), causes)
    return body


async def bind_subresource(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType,
                           out: Output) -> Response:
    """``POST /api/v1/namespaces/NS/pods/NAME/binding``."""
    if req.method != "POST":
        raise errors.method_not_allowed()
    binding = _check_binding(decode_body(req), info.namespace)
    if (binding["metadata"].get("name") or "") != info.name:
        raise errors.bad_request("name in URL does not match name in Binding object")
    return await _bind(ctx, req, rt, info.namespace, binding, out)


async def bind_collection(ctx: Context, req: Request, info: RequestInfo,
                          out: Output) -> Response:
    """``POST /api/v1/namespaces/NS/bindings`` (the Binding names the pod)."""
    rt = ctx.resource("", "v1", "pods")
    assert rt is not None, "pods are always served"
    if req.method != "POST":
        raise errors.method_not_allowed()
    binding = _check_binding(decode_body(req), info.namespace)
    if not binding["metadata"].get("name"):
        raise errors.invalid("Binding", "", [errors.required("metadata.name")])
    return await _bind(ctx, req, rt, info.namespace, binding, out)


async def _bind(ctx: Context, req: Request, rt: ResourceType, namespace: str, binding: JSON,
                out: Output) -> Response:
    meta = binding["metadata"]
    name: str = meta["name"]
    node: str = binding["target"]["name"]
    annotations = meta.get("annotations") or {}
    want_uid, want_rv = meta.get("uid") or "", meta.get("resourceVersion") or ""
    dry = is_dry_run(req)
    key = storage.key(rt, namespace, name)
    for _ in range(_MAX_RETRIES):
        kv = await get_kv(ctx, key)
        if kv is None:
            raise errors.not_found(rt.plural, name)
        pod = storage.decode(kv)
        assign(pod, node, annotations, now=now_rfc3339(), want_uid=want_uid, want_rv=want_rv)
        if dry:
            break
        try:
            await ctx.store.update(key, storage.encode(pod), expected_mod_revision=kv.mod_revision)
        except (store_errors.ConflictError, store_errors.KeyNotFoundError):
            continue  # a write came between: look again (the checks may now refuse)
        except store_errors.UnavailableError as exc:
            raise errors.service_unavailable(str(exc)) from exc
        break
    else:
        raise errors.conflict(_RESOURCE, name)
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
              "code": 201}
    return Response(201, dump(status, out), out.media)


def assign(pod: JSON, node: str, annotations: JSON, *, now: str, want_uid: str = "",
           want_rv: str = "") -> None:
    """Bind ``pod`` (decoded from the store, changed in place) to ``node``, or
    raise the 409 kube-apiserver answers."""
    meta = pod["metadata"]
    name = meta["name"]
    if want_uid and want_uid != meta.get("uid"):
        raise errors.conflict("pods", name, why=f"Precondition failed: UID in precondition: "
                              f"{want_uid}, UID in object meta: {meta.get('uid')}")
    if want_rv and want_rv != meta.get("resourceVersion"):
        raise errors.conflict("pods", name, why=f"Precondition failed: ResourceVersion in "
                              f"precondition: {want_rv}, ResourceVersion in object meta: "
                              f"{meta.get('resourceVersion')}")
    spec = pod.setdefault("spec", {})
    if meta.get("deletionTimestamp"):
        raise errors.conflict(_RESOURCE, name,
                              why=f"pod {name} is being deleted, cannot be assigned to a host")
    if spec.get("nodeName"):
        raise errors.conflict(_RESOURCE, name,
                              why=f'pod {name} is already assigned to node "{spec["nodeName"]}"')
    if spec.get("schedulingGates"):
        raise errors.conflict(_RESOURCE, name, why=f"pod {name} has non-empty .spec.schedulingGates")
    spec["nodeName"] = node
    if annotations:
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    status = pod.setdefault("status", {})
    status.pop("nominatedNodeName", None)
    conditions = list(status.get("conditions") or [])
    scheduled: JSON = {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": now}
    for i, cond in enumerate(conditions):
        if cond.get("type") == "PodScheduled":
            if cond.get("status") == "True" and cond.get("lastTransitionTime"):
                scheduled["lastTransitionTime"] = cond["lastTransitionTime"]
            conditions[i] = scheduled
            break
    else:
        conditions.append(scheduled)
    status["conditions"] = conditions
