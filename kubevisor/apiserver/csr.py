"""What kube-apiserver's strategy does for CertificateSigningRequests
(certificates.k8s.io/v1) beyond the generic handlers.

* On create, ``spec.username``, ``spec.uid``, ``spec.groups`` and
  ``spec.extra`` are set from the authenticated requester, whatever the
  client sent: approvers decide on them (:func:`set_requester`, called by
  the create handler).
* ``certificatesigningrequests/<name>/approval`` (PUT): changes only
  ``status.conditions``; an Approved or Denied condition once set cannot be
  removed, and a request cannot be both (:func:`approval`, routed by the
  app; ``kubectl certificate approve|deny`` use it).
"""

from __future__ import annotations

from typing import Any

from kubevisor.api.kinds import ResourceType
from kubevisor.api.meta import now_rfc3339
from kubevisor.apiserver import errors, objects, storage
from kubevisor.apiserver.config import UserInfo
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Output, Request, Response, decode_body
from kubevisor.apiserver.routing import RequestInfo

JSON = dict[str, Any]
KIND = ("certificates.k8s.io", "CertificateSigningRequest")
_FINAL = ("Approved", "Denied")


def set_requester(rt: ResourceType, obj: JSON, user: UserInfo | None) -> None:
    """Record who asks (only for CSRs; other kinds are left alone)."""
    if (rt.group, rt.kind) != KIND:
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for key in ("username", "uid", "groups", "extra"):
        spec.pop(key, None)
    if user is None:
        return
    if user.name:
        spec["username"] = user.name
    if user.uid:
        spec["uid"] = user.uid
    if user.groups:
        spec["groups"] = list(user.groups)


def merge_conditions(old: list[JSON], new: list[JSON], *, name: str) -> list[JSON]:
    """The conditions an approval update stores (timestamps filled); 422
    when it drops an Approved/Denied condition or holds both."""
    kept = {c.get("type") for c in new if isinstance(c, dict)}
    lost = [t for t in _FINAL if any(c.get("type") == t for c in old) and t not in kept]
    if lost:
        raise _invalid(name, f'status.conditions: Forbidden: updates may not remove a '
                             f'condition of type "{lost[0]}"')
    if {"Approved", "Denied"} <= kept:
        raise _invalid(name, 'status.conditions[1].type: Invalid value: "Denied": '
                             'Approved and Denied conditions are mutually exclusive')
    now = now_rfc3339()
    out = []
    for cond in new:
        if not isinstance(cond, dict) or not cond.get("type"):
            raise _invalid(name, "status.conditions: Required value: type")
        cond = {"status": "True", **cond}
        cond.setdefault("lastUpdateTime", now)
        cond.setdefault("lastTransitionTime", now)
        out.append(cond)
    return out


async def approval(ctx: Context, req: Request, info: RequestInfo, rt: ResourceType,
                   out: Output) -> Response:
    """PUT .../certificatesigningrequests/<name>/approval."""
    from kubevisor.apiserver import resources  # resources calls set_requester

    if req.method != "PUT":
        raise errors.method_not_allowed()
    body = objects.check_body(rt, decode_body(req))
    objects.check_url_name(body, info.name)
    want_rv = body["metadata"].get("resourceVersion")
    wanted = (body.get("status") or {}).get("conditions") or []

    def mutate(old: JSON | None) -> JSON:
        assert old is not None
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, info.name, rt.group)
        status = dict(old.get("status") or {})
        status["conditions"] = merge_conditions(status.get("conditions") or [], wanted,
                                                name=info.name)
        old["status"] = status
        return old

    key = storage.key(rt, "", info.name)
    result, _ = await resources.write_update(ctx, req, rt, key, mutate, name=info.name,
                                             status_only=True, subresource="approval",
                                             conditional=bool(want_rv))
    return resources.object_response(200, result, out, req)


def _invalid(name: str, message: str) -> errors.ApiError:
    field, _, detail = message.partition(": ")
    return errors.invalid(KIND[1], name, [errors.field_cause(field, "FieldValueInvalid", detail)],
                          KIND[0])
