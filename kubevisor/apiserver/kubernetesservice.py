"""The ``kubernetes`` Service in ``default``, kept by the apiserver itself as
kube-apiserver's kubernetesservice controller keeps it.

Its ClusterIP is the first address of the service CIDR, its port 443
(``https``) leads to the apiserver's advertised address and port
(``ServerConfig.advertise_address`` / ``advertise_port``), written as the
Service's Endpoints and EndpointSlice. :func:`run` ensures all three every
:data:`RECONCILE_SECONDS` once the address is known and ``default``
exists (the address may be set on the config after start, e.g. once the
port is bound), writing only what differs. Started by
:func:`kubevisor.apiserver.services.start`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubevisor.apiserver import errors, namespaces, resources, storage
from kubevisor.apiserver.config import UserInfo
from kubevisor.apiserver.context import Context
from kubevisor.apiserver.http import Request
from kubevisor.apiserver.listing import get_kv
from kubevisor.store import errors as store_errors

JSON = dict[str, Any]

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 10.0
WAITING_SECONDS = 1.0
NAME = "kubernetes"
NAMESPACE = "default"
SYSTEM = UserInfo(name="system:apiserver", groups=("system:masters",))


def desired_service(cluster_ip: str, port: int) -> JSON:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                 "ports": desired_ports(port)},
    }


def desired_ports(port: int) -> list[JSON]:
    return [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]


def desired_endpoints(address: str, port: int) -> JSON:
    return {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    }


def desired_slice(address: str, port: int) -> JSON:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv6" if ":" in address else "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


def _request() -> Request:
    return Request(method="PUT", path="", query={}, headers={"user-agent": "kube-apiserver"},
                   user=SYSTEM)


async def run(ctx: Context) -> None:
    """Reconcile forever: every second until the first pass could run
    (the address or ``default`` may come a moment after start), then every
    :data:`RECONCILE_SECONDS`."""
    done = False
    while True:
        try:
            done = await ensure(ctx) or done
        except (errors.ApiError, store_errors.StoreError) as exc:
            log.warning("could not reconcile the kubernetes Service: %s", exc)
        await asyncio.sleep(RECONCILE_SECONDS if done else WAITING_SECONDS)


async def ensure(ctx: Context) -> bool:
    """One pass; False when it cannot run yet (no address, no ``default``)."""
    from kubevisor.apiserver import services

    address, port = ctx.config.advertise_address, ctx.config.advertise_port
    if not address or not port or await namespaces.state(ctx, NAMESPACE) is not False:
        return False
    svc_rt = ctx.registry.by_resource("", "v1", "services")
    ep_rt = ctx.registry.by_resource("", "v1", "endpoints")
    assert svc_rt is not None and ep_rt is not None
    req = _request()
    key = storage.key(svc_rt, NAMESPACE, NAME)
    kv = await get_kv(ctx, key)
    ports = desired_ports(port)
    if kv is None:
        svc = desired_service(services.allocators(ctx).ips.range.first(), port)
        try:
            await resources.create_object(ctx, req, svc_rt, svc, NAMESPACE)
        except errors.ApiError as exc:
            if exc.code != 409:
                raise
    elif ((storage.decode(kv).get("spec") or {}).get("ports")) != ports:
        def set_ports(old: JSON | None) -> JSON:
            new = resources.clone(old or {})
            new.setdefault("spec", {})["ports"] = ports
            return new

        await resources.write_update(ctx, req, svc_rt, key, set_ports, name=NAME)
    await _ensure(ctx, req, ep_rt, desired_endpoints(address, port), ("subsets",))
    slice_rt = ctx.registry.by_resource("discovery.k8s.io", "v1", "endpointslices")
    if slice_rt is not None:
        await _ensure(ctx, req, slice_rt, desired_slice(address, port),
                      ("addressType", "endpoints", "ports"))
    return True


async def _ensure(ctx: Context, req: Request, rt: Any, desired: JSON,
                  fields: tuple[str, ...]) -> None:
    key = storage.key(rt, NAMESPACE, NAME)
    kv = await get_kv(ctx, key)
    if kv is not None:
        current = storage.decode(kv)
        labels = (current.get("metadata") or {}).get("labels") or {}
        if all(current.get(f) == desired.get(f) for f in fields) and \
                all(labels.get(k) == v for k, v in desired["metadata"]["labels"].items()):
            return

    def mutate(old: JSON | None) -> JSON:
        new = resources.clone(desired)
        if old is not None:
            labels = {**((old.get("metadata") or {}).get("labels") or {}),
                      **desired["metadata"]["labels"]}
            new["metadata"] = {**old["metadata"], "labels": labels}
        return new

    await resources.write_update(ctx, req, rt, key, mutate, name=NAME,
                                 create_namespace=NAMESPACE)
