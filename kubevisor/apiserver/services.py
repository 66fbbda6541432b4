"""The Service rules kube-apiserver keeps in its Service storage: cluster IPs
and node ports allocated on create, kept, allocated or released on update,
released on delete.

On create (:func:`before_create`) ``spec.clusterIP``/``clusterIPs`` get a
random free address of the service CIDR, or the one asked for if it is
free and in range (else 422 with kube's ``failed to allocate IP …``);
``None`` makes a headless Service; ipFamilies and ipFamilyPolicy are
filled. NodePort and LoadBalancer Services get node ports the same way.
On update (:func:`before_update`) values a client left out are carried
over from the stored object (kube's patchAllocatedValues), fields the new
type no longer uses are dropped when unchanged, a type change allocates
what the new type needs, and the cluster IP may not change. Releases
happen once the write is stored (:func:`after_write`). Allocation itself
is in :mod:`kubevisor.apiserver.serviceranges`. Called by the resource
handlers (create, update, patch, apply, delete) and the app's lifespan
(:func:`start`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from kubevisor.api.fielderrors import (
    DUPLICATE,
    FORBIDDEN,
    FieldError,
    GoRepr,
    invalid,
    not_supported,
    required,
)
from kubevisor.api.kinds import ResourceType
from kubevisor.apiserver import errors, serviceranges
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.serviceranges import Allocators, Reservations, held_ips, held_ports
from kubevisor.store import errors as store_errors

JSON = dict[str, Any]

log = logging.getLogger(__name__)

SERVICE = ("", "Service")
_FAMILIES = ("IPv4", "IPv6")
_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
_VALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def allocators(ctx: Context) -> Allocators:
    """This server's allocators (built from its config on first use)."""
    if ctx.services is None:
        ctx.services = Allocators.build(ctx.store, cidr=ctx.config.service_cidr,
                                        node_ports=ctx.config.service_node_port_range)
    result: Allocators = ctx.services
    return result


async def start(ctx: Context) -> list[asyncio.Task[None]]:
    """Load and repair the reservations, and start the loops that keep them
    current (and the ``kubernetes`` Service, when the server knows its
    address). Called once by the app at start-up; returns the tasks."""
    from kubevisor.apiserver import kubernetesservice

    alloc = allocators(ctx)
    revision = await serviceranges.load(alloc)
    try:
        await serviceranges.repair(alloc)
    except store_errors.StoreError:
        log.warning("service range repair at start failed; the periodic one will retry",
                    exc_info=True)
    return [
        asyncio.create_task(serviceranges.sync_loop(alloc, revision), name="service-ranges"),
        asyncio.create_task(serviceranges.repair_loop(alloc), name="service-ranges-repair"),
        asyncio.create_task(kubernetesservice.run(ctx), name="kubernetes-service"),
    ]


# --- pure rules ------------------------------------------------------------------


def _spec(svc: JSON | None) -> JSON:
    spec = (svc or {}).get("spec")
    return spec if isinstance(spec, dict) else {}


def _type(svc: JSON | None) -> str:
    return str(_spec(svc).get("type") or "ClusterIP")


def needs_cluster_ip(svc: JSON | None) -> bool:
    return _type(svc) != "ExternalName"


def needs_node_ports(svc: JSON | None) -> bool:
    return _type(svc) in ("NodePort", "LoadBalancer")


def needs_health_check_port(svc: JSON | None) -> bool:
    return _type(svc) == "LoadBalancer" and _spec(svc).get("externalTrafficPolicy") == "Local"


def is_headless(svc: JSON | None) -> bool:
    return _spec(svc).get("clusterIP") == "None"


def _should_allocate_node_ports(svc: JSON) -> bool:
    if _type(svc) == "NodePort":
        return True
    return _type(svc) == "LoadBalancer" and _spec(svc).get("allocateLoadBalancerNodePorts") is not False


def _set(spec: JSON, key: str, value: Any) -> None:
    if value in (None, "", [], 0):
        spec.pop(key, None)
    else:
        spec[key] = value


def normalize_cluster_ips(new: JSON, old: JSON | None) -> None:
    """Keep clusterIP and clusterIPs in step for clients that set only one
    (kube's NormalizeClusterIPs)."""
    spec, ospec = _spec(new), _spec(old)
    ip, ips = spec.get("clusterIP") or "", list(spec.get("clusterIPs") or [])
    if old is None:
        if ip and not ips:
            spec["clusterIPs"] = [ip]
        return
    oip, oips = ospec.get("clusterIP") or "", list(ospec.get("clusterIPs") or [])
    if oips and not ips and oip == ip:
        ips = oips
        _set(spec, "clusterIPs", ips)
    if oip != ip:
        if oip and not ip:
            if ips == oips:
                spec.pop("clusterIPs", None)
        elif ips == oips:
            spec["clusterIPs"] = [ip]


def patch_allocated_values(new: JSON, old: JSON) -> None:
    """Values the server allocated that an update left out are kept."""
    spec, ospec = _spec(new), _spec(old)
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not spec.get("clusterIP") and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
        if not spec.get("clusterIPs") and ospec.get("clusterIPs"):
            spec["clusterIPs"] = list(ospec["clusterIPs"])
    if needs_node_ports(old) and needs_node_ports(new):
        used = held_ports({"spec": {"ports": spec.get("ports")}}) & \
            held_ports({"spec": {"ports": ospec.get("ports")}})
        by_name = {p.get("name", ""): p.get("nodePort") for p in ospec.get("ports") or ()
                   if isinstance(p, dict)}
        for port in spec.get("ports") or ():
            if isinstance(port, dict) and not port.get("nodePort"):
                value = by_name.get(port.get("name", ""))
                if value and str(value) not in used:
                    port["nodePort"] = value
    if needs_health_check_port(old) and needs_health_check_port(new):
        if not spec.get("healthCheckNodePort") and ospec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]


def drop_type_dependent_fields(new: JSON, old: JSON) -> None:
    """Fields the new type does not use go, if the update left them as they
    were (kube's dropTypeDependentFields)."""
    spec, ospec = _spec(new), _spec(old)
    if not needs_cluster_ip(new) and spec.get("clusterIPs") == ospec.get("clusterIPs") \
            and spec.get("clusterIP") == ospec.get("clusterIP"):
        for key in ("clusterIP", "clusterIPs"):
            spec.pop(key, None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if spec.get(key) == ospec.get(key):
                spec.pop(key, None)
    if not needs_node_ports(new):
        same = [p.get("nodePort") for p in spec.get("ports") or () if isinstance(p, dict)] == \
            [p.get("nodePort") for p in ospec.get("ports") or () if isinstance(p, dict)]
        if same:
            for port in spec.get("ports") or ():
                if isinstance(port, dict):
                    port.pop("nodePort", None)
    if not needs_health_check_port(new) and \
            spec.get("healthCheckNodePort") == ospec.get("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if _type(new) != "LoadBalancer":
        spec.pop("allocateLoadBalancerNodePorts", None)
        if spec.get("loadBalancerClass") == ospec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if not needs_node_ports(new) and \
            spec.get("externalTrafficPolicy") == ospec.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if not needs_cluster_ip(new) and \
            spec.get("internalTrafficPolicy") == ospec.get("internalTrafficPolicy"):
        spec.pop("internalTrafficPolicy", None)


def _ips_value(ips: list[Any]) -> GoRepr:
    return GoRepr("[]string{" + ", ".join(f'"{ip}"' for ip in ips) + "}")


def field_errors(svc: JSON, *, version: int) -> list[FieldError]:
    """kube's checks of clusterIP(s), ipFamilies, ipFamilyPolicy and node
    ports that the schema cannot express (``version``: the cluster's family)."""
    spec = _spec(svc)
    errs: list[FieldError] = []
    typ = _type(svc)
    ip, ips = spec.get("clusterIP") or "", list(spec.get("clusterIPs") or [])
    if typ == "ExternalName":
        if ip or ips:
            errs.append(FieldError(FORBIDDEN, "spec.clusterIPs", None,
                                   "may not be set for ExternalName services"))
        return errs
    if ip:
        if not ips:
            errs.append(required("spec.clusterIPs"))
        elif ips[0] != ip:
            errs.append(invalid("spec.clusterIPs", _ips_value(ips),
                                "first value must match `clusterIP`"))
    elif ips:
        errs.append(invalid("spec.clusterIPs", _ips_value(ips),
                            "must be empty when `clusterIP` is not specified"))
    for i, fam in enumerate(spec.get("ipFamilies") or ()):
        if fam not in _FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", fam, list(_FAMILIES)))
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in _POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, list(_POLICIES)))
    for i, value in enumerate(ips):
        if i == 0 and value == "None":
            if len(ips) > 1:
                errs.append(invalid("spec.clusterIPs", _ips_value(ips),
                                    "'None' must be the first and only value"))
            continue
        if not _valid_ip(value):
            errs.append(invalid(f"spec.clusterIPs[{i}]", value, _VALID_IP))
    if len(ips) > 2:
        errs.append(invalid("spec.clusterIPs", _ips_value(ips), "may only hold up to 2 values"))
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(spec.get("ports") or ()):
        if not isinstance(port, dict) or not port.get("nodePort"):
            continue
        if typ == "ClusterIP":
            errs.append(FieldError(FORBIDDEN, f"spec.ports[{i}].nodePort", None,
                                   "may not be used when `type` is 'ClusterIP'"))
        key = (port["nodePort"], port.get("protocol") or "TCP")
        if key in seen:
            errs.append(FieldError(DUPLICATE, f"spec.ports[{i}].nodePort", port["nodePort"]))
        seen.add(key)
    if errs:
        return errs
    families = list(spec.get("ipFamilies") or ())
    fam = f"IPv{version}"
    for i, value in enumerate(ips):
        if value != "None" and i >= len(families) and f"IPv{ipaddress.ip_address(value).version}" != fam:
            errs.append(invalid(f"spec.clusterIPs[{i}]", _ips_value(ips),
                                f"IPv{ipaddress.ip_address(value).version} is not configured "
                                "on this cluster"))
    if policy == "RequireDualStack" and not (is_headless(svc) and not spec.get("selector")):
        errs.append(invalid("spec.ipFamilyPolicy", policy,
                            "this cluster is not configured for dual-stack services"))
    for i, family in enumerate(families):
        if family != fam and not (is_headless(svc) and not spec.get("selector")):
            errs.append(invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster"))
    return errs


def _valid_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def init_ip_families(svc: JSON, old: JSON | None, *, version: int) -> None:
    """Default ipFamilyPolicy and ipFamilies as kube's initIPFamilyFields does
    on a single-stack cluster."""
    if not needs_cluster_ip(svc):
        return
    spec = _spec(svc)
    fam = f"IPv{version}"
    other = "IPv6" if version == 4 else "IPv4"
    if not spec.get("ipFamilyPolicy"):
        if old is not None and _spec(old).get("ipFamilyPolicy"):
            spec["ipFamilyPolicy"] = _spec(old)["ipFamilyPolicy"]
        elif is_headless(svc) and not spec.get("selector"):
            spec["ipFamilyPolicy"] = "RequireDualStack"
        else:
            spec["ipFamilyPolicy"] = "SingleStack"
    families = list(spec.get("ipFamilies") or [])
    if is_headless(svc) and not spec.get("selector"):
        families = families or [fam]
        if len(families) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
            families.append(other if families[0] == fam else fam)
    elif not families:
        families = [fam]
    spec["ipFamilies"] = families


# --- hooks ----------------------------------------------------------------------


def _invalid(svc: JSON, errs: list[FieldError]) -> errors.ApiError:
    name = (svc.get("metadata") or {}).get("name") or ""
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errs]
    return errors.invalid("Service", name, causes)


def _check(ctx: Context, svc: JSON) -> None:
    errs = field_errors(svc, version=allocators(ctx).ips.range.version)
    if errs:
        raise _invalid(svc, errs)


async def before_create(ctx: Context, rt: ResourceType, svc: JSON, *, dry: bool) -> None:
    """Allocate a new Service's cluster IP and node ports (in place)."""
    if (rt.group, rt.kind) != SERVICE:
        return
    normalize_cluster_ips(svc, None)
    _check(ctx, svc)
    init_ip_families(svc, None, version=allocators(ctx).ips.range.version)
    await _allocate(ctx, svc, None, dry=dry)


async def before_update(ctx: Context, rt: ResourceType, new: JSON, old: JSON, *,
                        dry: bool) -> None:
    """Carry allocated values over, drop what the new type does not use,
    allocate what it needs (releases wait for :func:`after_write`)."""
    if (rt.group, rt.kind) != SERVICE:
        return
    normalize_cluster_ips(new, old)
    patch_allocated_values(new, old)
    drop_type_dependent_fields(new, old)
    _check(ctx, new)
    init_ip_families(new, old, version=allocators(ctx).ips.range.version)
    await _allocate(ctx, new, old, dry=dry)


async def after_write(ctx: Context, rt: ResourceType, new: JSON | None, old: JSON | None) -> None:
    """Release what ``old`` held and ``new`` (None: deleted) does not."""
    if (rt.group, rt.kind) != SERVICE or old is None:
        return
    alloc = allocators(ctx)
    uid = (old.get("metadata") or {}).get("uid", "")
    for ip in held_ips(old) - held_ips(new):
        await alloc.ips.release(ip, uid)
    for port in held_ports(old) - held_ports(new):
        await alloc.ports.release(port, uid)


async def _allocate(ctx: Context, svc: JSON, old: JSON | None, *, dry: bool) -> None:
    alloc = allocators(ctx)
    owner = serviceranges.owner_of(svc)
    taken: list[tuple[Reservations, str]] = []
    try:
        await _allocate_ips(alloc.ips, svc, old, owner, taken, dry=dry)
        await _allocate_node_ports(alloc.ports, svc, old, owner, taken, dry=dry)
    except BaseException:
        for res, value in taken:
            await res.release(value, owner["uid"])
        raise


async def _take(res: Reservations, value: str, owner: JSON, taken: list[tuple[Reservations, str]],
                *, dry: bool) -> bool:
    if dry:
        return not await res.taken(value, owner["uid"])
    if await res.reserve(value, owner):
        taken.append((res, value))
        return True
    return False


async def _take_next(res: Reservations, owner: JSON, taken: list[tuple[Reservations, str]],
                     *, dry: bool) -> str | None:
    if dry:
        return res.pick()
    value = await res.reserve_next(owner)
    if value is not None:
        taken.append((res, value))
    return value


async def _allocate_ips(res: Reservations, svc: JSON, old: JSON | None, owner: JSON,
                        taken: list[tuple[Reservations, str]], *, dry: bool) -> None:
    spec = _spec(svc)
    if not needs_cluster_ip(svc) or is_headless(svc):
        return
    if old is not None and needs_cluster_ip(old) and held_ips(old):
        return  # kept (a change was refused above)
    ips = list(spec.get("clusterIPs") or [])
    if ips:
        ip = ips[0]
        if not res.range.contains(ip):
            raise _invalid(svc, [invalid("spec.clusterIPs", _ips_value(ips),
                                         f"failed to allocate IP {ip}: "
                                         f"{res.range.not_in_range()}")])
        if not await _take(res, ip, owner, taken, dry=dry):
            raise _invalid(svc, [invalid("spec.clusterIPs", _ips_value(ips),
                                         f"failed to allocate IP {ip}: "
                                         "provided IP is already allocated")])
        return
    picked = await _take_next(res, owner, taken, dry=dry)
    if picked is None:
        raise errors.internal("failed to allocate a serviceIP: range is full")
    spec["clusterIP"] = picked
    spec["clusterIPs"] = [picked]


async def _allocate_node_ports(res: Reservations, svc: JSON, old: JSON | None, owner: JSON,
                               taken: list[tuple[Reservations, str]], *, dry: bool) -> None:
    spec = _spec(svc)
    if not needs_node_ports(svc):
        return
    mine = held_ports(old) if old is not None and needs_node_ports(old) else set()
    by_port: dict[Any, int] = {}  # service port -> node port (TCP and UDP 53 share one)
    done: set[str] = set()

    async def take(value: int, path: str) -> None:
        text = str(value)
        if text in mine or text in done:
            return
        if not res.range.contains(text):
            raise _invalid(svc, [invalid(path, value, res.range.not_in_range())])
        if not await _take(res, text, owner, taken, dry=dry):
            raise _invalid(svc, [invalid(path, value, "provided port is already allocated")])
        done.add(text)

    ports = [p for p in spec.get("ports") or () if isinstance(p, dict)]
    for i, port in enumerate(ports):
        if port.get("nodePort"):
            await take(port["nodePort"], f"spec.ports[{i}].nodePort")
            by_port.setdefault(port.get("port"), port["nodePort"])
    for port in ports:
        if port.get("nodePort") or not _should_allocate_node_ports(svc):
            continue
        shared = by_port.get(port.get("port"))
        if shared:
            port["nodePort"] = shared
            continue
        picked = await _take_next(res, owner, taken, dry=dry)
        if picked is None:
            raise errors.internal("failed to allocate a nodePort: range is full")
        port["nodePort"] = by_port[port.get("port")] = int(picked)
        done.add(picked)
    if needs_health_check_port(svc):
        hc = spec.get("healthCheckNodePort")
        if hc:
            try:
                await take(hc, "spec.healthCheckNodePort")
            except errors.ApiError as exc:
                raise errors.internal(f"failed to allocate requested HealthCheck NodePort "
                                      f"{hc}: {exc.message.rsplit(': ', 1)[-1]}") from exc
        else:
            picked = await _take_next(res, owner, taken, dry=dry)
            if picked is None:
                raise errors.internal("failed to allocate a HealthCheck NodePort: range is full")
            spec["healthCheckNodePort"] = int(picked)
