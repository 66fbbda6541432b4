"""Probes over real loopback sockets, pull secrets, and events against a
real apiserver."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest

from kubevisor.client import Client
from kubevisor.node.events import EventRecorder
from kubevisor.node.probes import run_probe
from kubevisor.node.pullsecrets import pull_policy, registry_auth
from kubevisor.runtime.types import RegistryAuth


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        while (await reader.readline()).strip():
            pass
        code = b"200 OK" if b" /ok " in line else b"500 Internal Server Error"
        writer.write(b"HTTP/1.1 " + code + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def test_http_and_tcp_probes(http_server: int) -> None:
    c = {"name": "c", "ports": [{"name": "web", "containerPort": http_server}]}
    kw = {"runtime": None, "container_id": "x", "container": c, "pod_ip": "127.0.0.1"}
    ok = await run_probe({"httpGet": {"path": "/ok", "port": "web"}}, **kw)  # type: ignore[arg-type]
    assert ok == (True, "")
    bad = await run_probe({"httpGet": {"path": "/bad", "port": http_server}}, **kw)  # type: ignore[arg-type]
    assert bad == (False, "HTTP probe failed with statuscode: 500")
    assert (await run_probe({"tcpSocket": {"port": http_server}}, **kw))[0]  # type: ignore[arg-type]
    # A port nobody listens on: refused.
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    free = sock_server.sockets[0].getsockname()[1]
    sock_server.close()
    await sock_server.wait_closed()
    ok2, msg = await run_probe({"tcpSocket": {"port": free}}, **kw)  # type: ignore[arg-type]
    assert not ok2 and msg.startswith(f"dial tcp 127.0.0.1:{free}: connect:")
    ok3, msg3 = await run_probe({"httpGet": {"port": free}}, **kw)  # type: ignore[arg-type]
    assert not ok3 and msg3.startswith(f'Get "http://127.0.0.1:{free}/"')


def test_pull_secrets_and_policy() -> None:
    cfg = {"auths": {"https://reg.example:5000": {"auth": base64.b64encode(b"u:p").decode()},
                     "other.example": {"username": "a", "password": "b"}}}
    secret = {"data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()}}
    assert registry_auth([secret]) == {"reg.example:5000": RegistryAuth("u", "p"),
                                       "other.example": RegistryAuth("a", "b")}
    assert pull_policy({"image": "busybox"}) == "Always"
    assert pull_policy({"image": "127.0.0.1:5000/busybox:1"}) == "IfNotPresent"
    assert pull_policy({"image": "127.0.0.1:5000/busybox"}) == "Always"
    assert pull_policy({"image": "x@sha256:ab"}) == "IfNotPresent"
    assert pull_policy({"image": "x:1", "imagePullPolicy": "Never"}) == "Never"


async def test_events_posted_and_counted(api: Client) -> None:
    pod = await api.create({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "p", "namespace": "default"},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    rec = EventRecorder(api, "node-a")
    await rec.emit(pod, "Normal", "Pulling", 'Pulling image "busybox"', container="c")
    await rec.emit(pod, "Warning", "BackOff", "Back-off restarting failed container c", container="c")
    await rec.emit(pod, "Warning", "BackOff", "Back-off restarting failed container c", container="c")
    events = (await api.list("v1", "Event", namespace="default"))["items"]
    by_reason = {e["reason"]: e for e in events}
    assert set(by_reason) == {"Pulling", "BackOff"}
    e = by_reason["BackOff"]
    assert e["count"] == 2 and e["type"] == "Warning"
    assert e["source"] == {"component": "kubelet", "host": "node-a"}
    assert e["reportingComponent"] == "kubelet" and e["reportingInstance"] == "node-a"
    assert e["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert e["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert by_reason["Pulling"]["message"] == 'Pulling image "busybox"'


async def test_vm_events_name_the_vm_and_the_node_agent_and_repeat_as_a_count(api: Client) -> None:
    from kubevisor.node.vms.events import vm_events

    vm = {"apiVersion": "vmoperator.vmware.com/v1alpha6", "kind": "VirtualMachine",
          "metadata": {"name": "web", "namespace": "default", "uid": "vm-uid-1"}}
    rec = vm_events(api, "node-a")
    for _ in range(3):
        await rec.emit(vm, "Warning", "PowerOnFailed", "QEMU did not start")
    events = (await api.list("v1", "Event", namespace="default"))["items"]
    [event] = [e for e in events if e["reason"] == "PowerOnFailed"]
    assert event["count"] == 3
    assert event["involvedObject"]["kind"] == "VirtualMachine"
    assert event["involvedObject"]["apiVersion"] == "vmoperator.vmware.com/v1alpha6"
    assert event["source"] == {"component": "kubevisor-node", "host": "node-a"}
