"""The Endpoints and EndpointSlice controllers against a real apiserver, with
the controller manager running; the tests play the kubelet by setting pod
IPs and Ready conditions through the status subresource."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from typing import Any

import pytest

from kubevisor.client import Client, NotFoundError
from kubevisor.controllers.endpointslices import CONTROLLER_NAME, MANAGED_BY, SERVICE_NAME
from tests.controllers.nodeplay import eventually as _eventually
from tests.controllers.nodeplay import now

JSON = dict[str, Any]
NODE = "node-a"


#: Polls as nodeplay.eventually does, with this module's 20 s default.
eventually = functools.partial(_eventually, timeout=20.0)


async def setup(api: Client, ns: str) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
                      "status": {"conditions": [{
                          "type": "Ready", "status": "True", "reason": "KubeletReady",
                          "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}})


async def pod(api: Client, ns: str, name: str, labels: dict[str, str],
              ports: list[JSON] | None = None) -> JSON:
    container: JSON = {"name": "c", "image": "busybox"}
    if ports:
        container["ports"] = ports
    return await api.create({"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": name, "namespace": ns, "labels": labels},
                             "spec": {"nodeName": NODE, "containers": [container]}})


async def kubelet(api: Client, ns: str, name: str, ip: str, *, ready: bool) -> JSON:
    """What the node agent reports: Running, the pod's IP, Ready or not."""
    status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.1",
              "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                              "lastTransitionTime": now()}]}
    return await api.patch("v1", "Pod", name, {"status": status}, namespace=ns,
                           subresource="status")


async def service(api: Client, ns: str, name: str, **spec: Any) -> JSON:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns,
                                                                "labels": {"tier": "web"}},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80,
                                                            "targetPort": 8080}], **spec}}
    return await api.create(body)


async def endpoints(api: Client, ns: str, name: str) -> JSON | None:
    try:
        return await api.get("v1", "Endpoints", name, namespace=ns)
    except NotFoundError:
        return None


def ips(ep: JSON | None, field: str = "addresses") -> list[str]:
    return sorted(a["ip"] for s in (ep or {}).get("subsets") or () for a in s.get(field) or ())


async def test_endpoints_follow_pods_becoming_ready_unready_deleted(api: Client) -> None:
    ns = "ep1"
    await setup(api, ns)
    await service(api, ns, "web")
    await pod(api, ns, "web-1", {"app": "web"})
    await pod(api, ns, "web-2", {"app": "web"})
    await pod(api, ns, "db", {"app": "db"})
    ep = await eventually(lambda: endpoints(api, ns, "web"), what="Endpoints created")
    assert not ep.get("subsets")  # no pod has an IP yet
    assert ep["metadata"]["labels"] == {"tier": "web"}
    w1 = await kubelet(api, ns, "web-1", "10.244.0.11", ready=True)
    await kubelet(api, ns, "web-2", "10.244.0.12", ready=False)
    await kubelet(api, ns, "db", "10.244.0.13", ready=True)

    async def split() -> tuple[list[str], list[str]]:
        ep = await endpoints(api, ns, "web")
        return ips(ep), ips(ep, "notReadyAddresses")

    await eventually(lambda: _eq(split(), (["10.244.0.11"], ["10.244.0.12"])), what="split")
    ep = await endpoints(api, ns, "web")
    assert ep is not None
    assert ep["subsets"] == [{
        "addresses": [{"ip": "10.244.0.11", "nodeName": NODE, "targetRef": {
            "kind": "Pod", "namespace": ns, "name": "web-1", "uid": w1["metadata"]["uid"]}}],
        "notReadyAddresses": [{"ip": "10.244.0.12", "nodeName": NODE, "targetRef": {
            "kind": "Pod", "namespace": ns, "name": "web-2",
            "uid": ep["subsets"][0]["notReadyAddresses"][0]["targetRef"]["uid"]}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    trigger = ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
    assert trigger.endswith("Z")

    await kubelet(api, ns, "web-2", "10.244.0.12", ready=True)
    await eventually(lambda: _eq(split(), (["10.244.0.11", "10.244.0.12"], [])), what="ready")
    await kubelet(api, ns, "web-1", "10.244.0.11", ready=False)
    await eventually(lambda: _eq(split(), (["10.244.0.12"], ["10.244.0.11"])), what="unready")
    # Deleting a bound pod starts a graceful deletion: it leaves the Endpoints at once.
    await api.delete("v1", "Pod", "web-2", namespace=ns)
    await eventually(lambda: _eq(split(), ([], ["10.244.0.11"])), what="terminating gone")
    await api.delete("v1", "Pod", "web-1", namespace=ns, grace_period_seconds=0)
    await api.delete("v1", "Pod", "web-2", namespace=ns, grace_period_seconds=0)
    await eventually(lambda: _eq(split(), ([], [])), what="all gone")


async def _eq(got: Awaitable[Any], want: Any) -> bool:
    return bool(await got == want)


async def test_named_ports_resolve_per_pod(api: Client) -> None:
    ns = "ep2"
    await setup(api, ns)
    await service(api, ns, "app", ports=[{"name": "web", "port": 80, "targetPort": "http"}])
    await pod(api, ns, "a", {"app": "app"}, [{"name": "http", "containerPort": 8080}])
    await pod(api, ns, "b", {"app": "app"}, [{"name": "http", "containerPort": 9090}])
    await pod(api, ns, "c", {"app": "app"}, [{"name": "other", "containerPort": 7070}])
    for name, ip in (("a", "10.244.1.1"), ("b", "10.244.1.2"), ("c", "10.244.1.3")):
        await kubelet(api, ns, name, ip, ready=True)

    async def by_port() -> dict[int, list[str]]:
        ep = await endpoints(api, ns, "app")
        return {s["ports"][0]["port"]: [a["ip"] for a in s.get("addresses") or ()]
                for s in (ep or {}).get("subsets") or ()}

    await eventually(lambda: _eq(by_port(), {8080: ["10.244.1.1"], 9090: ["10.244.1.2"]}),
                     what="one subset per resolved port")


async def test_publish_not_ready_headless_and_selectorless(api: Client) -> None:
    ns = "ep3"
    await setup(api, ns)
    await service(api, ns, "pub", publishNotReadyAddresses=True)
    await pod(api, ns, "p", {"app": "pub"})
    await kubelet(api, ns, "p", "10.244.2.1", ready=False)
    await eventually(lambda: _eq(_ips(api, ns, "pub"), ["10.244.2.1"]), what="published")
    # Headless without ports: addresses without ports, and the headless label.
    await api.create({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "hl", "namespace": ns},
                      "spec": {"clusterIP": "None", "selector": {"app": "hl"}}})
    await pod(api, ns, "h", {"app": "hl"})
    await kubelet(api, ns, "h", "10.244.2.2", ready=True)
    ep = await eventually(lambda: _with_ips(api, ns, "hl"), what="headless")
    assert ep["subsets"][0].get("ports") is None
    assert ep["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}
    # A Service without selector: the user's Endpoints stay as written.
    await api.create({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "ext", "namespace": ns},
                      "spec": {"ports": [{"port": 5432}]}})
    mine = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext", "namespace": ns},
            "subsets": [{"addresses": [{"ip": "192.0.2.50"}], "ports": [{"port": 5432}]}]}
    written = await api.create(mine)
    await pod(api, ns, "noise", {"app": "ext"})
    await kubelet(api, ns, "noise", "10.244.2.3", ready=True)
    await asyncio.sleep(1.0)
    ep = await endpoints(api, ns, "ext")
    assert ep is not None
    assert ep["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


async def _ips(api: Client, ns: str, name: str) -> list[str]:
    return ips(await endpoints(api, ns, name))


async def _with_ips(api: Client, ns: str, name: str) -> JSON | None:
    ep = await endpoints(api, ns, name)
    return ep if ips(ep) else None


async def test_rewritten_only_when_changed_and_deleted_with_service(api: Client) -> None:
    ns = "ep4"
    await setup(api, ns)
    await service(api, ns, "web")
    await pod(api, ns, "w", {"app": "web"})
    await kubelet(api, ns, "w", "10.244.3.1", ready=True)
    ep = await eventually(lambda: _with_ips(api, ns, "web"), what="endpoints")
    rv = ep["metadata"]["resourceVersion"]
    # Changes that do not move the endpoints: an annotation, an unrelated pod.
    await api.patch("v1", "Pod", "w", {"metadata": {"annotations": {"x": "y"}}}, namespace=ns)
    await pod(api, ns, "other", {"app": "other"})
    await asyncio.sleep(1.0)
    ep = await endpoints(api, ns, "web")
    assert ep is not None and ep["metadata"]["resourceVersion"] == rv
    # Relabelling the pod out of the selector removes it.
    await api.patch("v1", "Pod", "w", {"metadata": {"labels": {"app": "gone"}}}, namespace=ns)
    await eventually(lambda: _eq(_ips(api, ns, "web"), []), what="relabelled out")
    await api.delete("v1", "Service", "web", namespace=ns)
    await eventually(lambda: _none(endpoints(api, ns, "web")), what="endpoints deleted")


async def _none(got: Awaitable[Any]) -> bool:
    return await got is None


# --- EndpointSlices ----------------------------------------------------------


async def slices(api: Client, ns: str, name: str) -> list[JSON]:
    listed = await api.list("discovery.k8s.io/v1", "EndpointSlice", namespace=ns,
                            label_selector=f"{SERVICE_NAME}={name}")
    return list(listed["items"])


def conditions(sl: list[JSON]) -> dict[str, JSON]:
    return {e["targetRef"]["name"]: e["conditions"] for s in sl for e in s.get("endpoints") or ()}


async def test_endpoint_slices_conditions_labels_and_cleanup(api: Client) -> None:
    ns = "es1"
    await setup(api, ns)
    svc = await service(api, ns, "web")
    # A Service without endpoints keeps one empty placeholder slice.
    placeholder = await eventually(lambda: slices(api, ns, "web"), what="placeholder")
    assert len(placeholder) == 1 and placeholder[0]["endpoints"] == []
    await pod(api, ns, "ready", {"app": "web"})
    await pod(api, ns, "unready", {"app": "web"})
    await pod(api, ns, "leaving", {"app": "web"})
    await kubelet(api, ns, "ready", "10.244.4.1", ready=True)
    await kubelet(api, ns, "unready", "10.244.4.2", ready=False)
    await kubelet(api, ns, "leaving", "10.244.4.3", ready=True)
    await api.delete("v1", "Pod", "leaving", namespace=ns)  # graceful: terminating

    async def check() -> dict[str, JSON] | None:
        got = conditions(await slices(api, ns, "web"))
        return got if len(got) == 3 and got["leaving"]["terminating"] else None

    got = await eventually(check, what="three endpoints")
    assert got == {
        "ready": {"ready": True, "serving": True, "terminating": False},
        "unready": {"ready": False, "serving": False, "terminating": False},
        "leaving": {"ready": False, "serving": True, "terminating": True},
    }
    [sl] = await slices(api, ns, "web")
    md = sl["metadata"]
    assert md["labels"] == {SERVICE_NAME: "web", MANAGED_BY: CONTROLLER_NAME, "tier": "web"}
    assert md["name"].startswith("web-")
    assert md["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                      "uid": svc["metadata"]["uid"], "controller": True,
                                      "blockOwnerDeletion": True}]
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert "endpoints.kubernetes.io/last-change-trigger-time" in md["annotations"]
    by_name = {e["targetRef"]["name"]: e for e in sl["endpoints"]}
    assert by_name["ready"]["addresses"] == ["10.244.4.1"]
    assert by_name["ready"]["nodeName"] == NODE
    # The garbage collector takes the slices with their Service.
    await api.delete("v1", "Service", "web", namespace=ns)
    await eventually(lambda: _empty(slices(api, ns, "web")), what="slices collected")


async def _empty(got: Awaitable[list[JSON]]) -> bool:
    return not await got


@pytest.mark.slow
async def test_a_hundred_and_five_pods_make_two_slices(api: Client) -> None:
    ns = "es2"
    await setup(api, ns)
    await service(api, ns, "big")
    names = [f"big-{i}" for i in range(105)]
    await asyncio.gather(*(pod(api, ns, n, {"app": "big"}) for n in names))
    await asyncio.gather(*(kubelet(api, ns, n, f"10.245.{i // 200}.{i % 200 + 1}", ready=True)
                           for i, n in enumerate(names)))

    async def two() -> list[int] | None:
        sizes = sorted(len(s["endpoints"]) for s in await slices(api, ns, "big"))
        return sizes if sum(sizes) == 105 else None

    assert await eventually(two, timeout=60, what="105 endpoints") == [5, 100]
    ep = await endpoints(api, ns, "big")
    assert len(ips(ep)) == 105
