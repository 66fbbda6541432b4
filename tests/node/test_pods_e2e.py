"""The node agent end to end: real runc/crun through the OCI driver, images
from a real loopback registry, real pod network namespaces, a real
in-process apiserver. Root only; slow."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubevisor.client import Client, NotFoundError
from tests.client.live import Live
from tests.node.e2e import (
    HostSetup,
    agent,
    busybox_pod,
    new_setup,
    pod_where,
    require_drivers,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_drivers()
    from tests.support import images
    from tests.support.registry import push, running_registry

    with running_registry(tmp_path_factory.mktemp("node-registry")) as reg:
        built = images.build(images.busybox_recipe())
        push(built, reg, name="node/busybox", tag="2")  # the same image, for image updates
        yield push(built, reg, name="node/busybox", tag="1")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[HostSetup]:
    require_drivers()
    s = new_setup(tmp_path / "host")
    try:
        yield s
    finally:
        await s.cleanup()


def _cond(pod: dict[str, Any], type_: str) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return str(c.get("status"))
    return None


def _main(pod: dict[str, Any]) -> dict[str, Any]:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


async def test_pod_runs_then_deletes_within_grace(live: Live, api: Client, setup: HostSetup,
                                                  busybox: str) -> None:
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod("web", busybox, [
            "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]))
        pod = await pod_where(api, "web", lambda p: _cond(p, "Ready") == "True")
        st = pod["status"]
        assert st["phase"] == "Running"
        assert ipaddress.ip_address(st["podIP"]) in ipaddress.ip_network(setup.pod_cidr)
        assert st["hostIP"] == "127.0.0.1"
        main = _main(pod)
        assert main["restartCount"] == 0 and main["ready"] and "running" in main["state"]
        assert main["imageID"].startswith(busybox.rsplit(":", 1)[0] + "@sha256:")
        events = (await api.list("v1", "Event", namespace="default"))["items"]
        reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "web"]
        for reason in ("Pulling", "Pulled", "Created", "Started"):
            assert reason in reasons
        node = await api.get("v1", "Node", "node-e2e")
        assert node["spec"]["podCIDR"] == setup.pod_cidr
        # Nothing changes: the status is not rewritten.
        rv = (await api.get("v1", "Pod", "web", namespace="default"))["metadata"]["resourceVersion"]
        await asyncio.sleep(2.5)
        again = await api.get("v1", "Pod", "web", namespace="default")
        assert again["metadata"]["resourceVersion"] == rv

        started = time.monotonic()
        await api.delete("v1", "Pod", "web", namespace="default")

        async def gone() -> bool:
            try:
                await api.get("v1", "Pod", "web", namespace="default")
            except NotFoundError:
                return True
            return False

        await wait_for(gone, timeout=20, what="pod deleted")
        assert time.monotonic() - started < 5 + 3
        runtime = (await setup.drivers()).runtime
        assert not [c for c in await runtime.list()
                    if c.labels.get("io.kubernetes.pod.name") == "web"]


async def test_crash_loop_backoff(live: Live, api: Client, setup: HostSetup,
                                  busybox: str) -> None:
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod("crash", busybox, ["sh", "-c", "exit 3"]))
        pod = await pod_where(
            api, "crash", lambda p: _main(p).get("restartCount", 0) >= 1
            and ((_main(p).get("state") or {}).get("waiting") or {}).get("reason")
            == "CrashLoopBackOff", timeout=60)
        main = _main(pod)
        assert main["lastState"]["terminated"]["exitCode"] == 3
        assert main["lastState"]["terminated"]["reason"] == "Error"
        assert "back-off 10s restarting failed container=main" in \
            main["state"]["waiting"]["message"]
        assert pod["status"]["phase"] == "Running"
        pod = await pod_where(api, "crash", lambda p: _main(p).get("restartCount", 0) >= 2,
                              timeout=40)
        events = (await api.list("v1", "Event", namespace="default"))["items"]
        assert any(e["reason"] == "BackOff" and e["involvedObject"]["name"] == "crash"
                   for e in events)


async def test_exec_readiness_probe_flips_ready(live: Live, api: Client, setup: HostSetup,
                                                busybox: str) -> None:
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1,
             "failureThreshold": 1}
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod(
            "probed", busybox, ["sh", "-c", "sleep 3; touch /tmp/ready; exec sleep 3600"],
            container={"readinessProbe": probe}))
        pod = await pod_where(api, "probed", lambda p: _main(p).get("state", {}).get("running"))
        assert _cond(pod, "Ready") == "False"
        pod = await pod_where(api, "probed", lambda p: _cond(p, "Ready") == "True", timeout=30)
        assert _main(pod)["ready"]


async def test_new_agent_readopts_running_pod(live: Live, api: Client, setup: HostSetup,
                                              busybox: str) -> None:
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod("keep", busybox, ["sleep", "3600"]))
        before = await pod_where(api, "keep", lambda p: _cond(p, "Ready") == "True")
    # The agent is gone; the container is not.
    async with agent(live.kubeconfig, setup):
        await wait_for(lambda: _lease_renewed(api), what="the new agent's lease")
        after = await pod_where(api, "keep", lambda p: _cond(p, "Ready") == "True")
        await pod_where(api, "keep", lambda p: True)
    assert _main(after)["restartCount"] == 0
    assert _main(after)["containerID"] == _main(before)["containerID"]
    assert _main(after)["state"] == _main(before)["state"]
    assert after["status"]["podIP"] == before["status"]["podIP"]


async def _lease_renewed(api: Client) -> bool:
    try:
        await api.get("coordination.k8s.io/v1", "Lease", "node-e2e", namespace="kube-node-lease")
    except NotFoundError:
        return False
    return True


async def test_liveness_failure_restarts_container(live: Live, api: Client, setup: HostSetup,
                                                   busybox: str) -> None:
    probe = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1,
             "failureThreshold": 2}
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod(
            "sick", busybox, ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; "
                              "trap 'exit 0' TERM; while true; do sleep 0.2; done"],
            container={"livenessProbe": probe}))
        pod = await pod_where(api, "sick", lambda p: _main(p).get("restartCount", 0) >= 1,
                              timeout=40)
        assert _main(pod)["lastState"]["terminated"]["exitCode"] == 0
        events = (await api.list("v1", "Event", namespace="default"))["items"]
        mine = [e for e in events if e["involvedObject"]["name"] == "sick"]
        assert any(e["reason"] == "Killing" and e["message"]
                   == "Container main failed liveness probe, will be restarted" for e in mine)
        assert any(e["reason"] == "Unhealthy" and e["message"].startswith(
            "Liveness probe failed:") for e in mine)


async def test_init_containers_config_error_and_env(live: Live, api: Client, setup: HostSetup,
                                                    busybox: str) -> None:
    async with agent(live.kubeconfig, setup, config_overrides={"volume_resync_seconds": 1.0}):
        pod = busybox_pod("cfg", busybox, ["sh", "-c", "cat /work/init.txt; echo FOO=$FOO; "
                                           "cat /etc/cfg/greeting; exec sleep 3600"],
                          container={
                              "env": [{"name": "FOO", "valueFrom": {"configMapKeyRef": {
                                  "name": "settings", "key": "foo"}}}],
                              "volumeMounts": [{"name": "work", "mountPath": "/work"},
                                               {"name": "cfg", "mountPath": "/etc/cfg"}]},
                          initContainers=[{"name": "prep", "image": busybox, "command": [
                              "sh", "-c", "echo prepared > /work/init.txt"],
                              "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
                          volumes=[{"name": "work", "emptyDir": {}},
                                   {"name": "cfg", "configMap": {"name": "settings",
                                                                 "optional": True}}])
        await api.create(pod)
        waiting = await pod_where(
            api, "cfg", lambda p: ((_main(p).get("state") or {}).get("waiting") or {}).get(
                "reason") == "CreateContainerConfigError")
        assert _main(waiting)["state"]["waiting"]["message"] == 'configmap "settings" not found'
        init = waiting["status"]["initContainerStatuses"][0]
        assert init["state"]["terminated"]["reason"] == "Completed"
        assert _cond(waiting, "Initialized") == "True"
        await api.create({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "settings", "namespace": "default"},
                          "data": {"foo": "bar", "greeting": "hello"}})
        await pod_where(api, "cfg", lambda p: _cond(p, "Ready") == "True", timeout=40)
        log = setup.data_dir / "pods" / waiting["metadata"]["uid"] / "logs" / "main" / "0.log"
        text = await wait_for(lambda: _read_when(log, "hello"), what="container log")
        assert "prepared" in text and "FOO=bar" in text
        # The configMap volume follows the ConfigMap.
        await api.patch("v1", "ConfigMap", "settings", {"data": {"greeting": "bonjour"}},
                        namespace="default")
        vol = setup.data_dir / "pods" / waiting["metadata"]["uid"] / "volumes" / \
            "configMap" / "cfg" / "greeting"
        await wait_for(lambda: _read_when(vol, "bonjour"), timeout=15, what="volume refresh")


async def _read_when(path: Path, needle: str) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    return text if needle in text else None


async def test_orphans_removed_at_start(live: Live, api: Client, setup: HostSetup,
                                        busybox: str) -> None:
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod("orphan", busybox, ["sleep", "3600"]))
        pod = await pod_where(api, "orphan", lambda p: _cond(p, "Ready") == "True")
    await api.delete("v1", "Pod", "orphan", namespace="default", grace_period_seconds=0)
    uid = pod["metadata"]["uid"]
    runtime = (await setup.drivers()).runtime
    assert [c for c in await runtime.list() if c.labels.get("io.kubernetes.pod.uid") == uid]
    async with agent(live.kubeconfig, setup):
        async def cleaned() -> bool:
            return not [c for c in await runtime.list()
                        if c.labels.get("io.kubernetes.pod.uid") == uid] \
                and not (setup.data_dir / "pods" / uid).exists()
        await wait_for(cleaned, timeout=30, what="orphan containers and files removed")


async def test_image_pull_failure(live: Live, api: Client, setup: HostSetup,
                                  busybox: str) -> None:
    missing = busybox.rsplit(":", 1)[0] + ":nope"
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod("nopull", missing, ["sleep", "1"]))
        pod = await pod_where(
            api, "nopull", lambda p: ((_main(p).get("state") or {}).get("waiting") or {}).get(
                "reason") == "ImagePullBackOff", timeout=30)
        assert _main(pod)["state"]["waiting"]["message"] == f'Back-off pulling image "{missing}"'
        assert pod["status"]["phase"] == "Pending"
        events = (await api.list("v1", "Event", namespace="default"))["items"]
        msgs = [e["message"] for e in events if e["involvedObject"]["name"] == "nopull"]
        assert f'Pulling image "{missing}"' in msgs
        assert "Error: ErrImagePull" in msgs
        assert any(m.startswith(f'Failed to pull image "{missing}": ') for m in msgs)


async def test_agent_process_killed_pods_survive(live: Live, api: Client, setup: HostSetup,
                                                 busybox: str) -> None:
    """kill -9 of the agent process: the pod keeps running; a new agent
    process re-adopts it with the same restartCount and container."""
    # The agent as kubevisor up runs it: python -m kubevisor.cli.nodeagent.
    args = setup.agent_args(live.kubeconfig)
    setup.root.mkdir(parents=True, exist_ok=True)
    with (setup.root / "agent.log").open("ab") as log:
        await _kill_and_readopt(live, api, setup, busybox, args, log)


async def _kill_and_readopt(live: Live, api: Client, setup: HostSetup, busybox: str,
                            args: list[str],
                            log: Any) -> None:
    first = await asyncio.create_subprocess_exec(*args, stderr=log)
    try:
        await api.create(busybox_pod("survivor", busybox, ["sleep", "3600"]))
        try:
            before = await pod_where(api, "survivor", lambda p: _cond(p, "Ready") == "True",
                                     timeout=20)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nagent log:\n"
                                 f"{(setup.root / 'agent.log').read_text()[-3000:]}"
                                 f"\nexit: {first.returncode}") from None
    finally:
        if first.returncode is None:
            first.kill()
        await first.wait()
    runtime = (await setup.drivers()).runtime
    running = [c for c in await runtime.list()
               if c.labels.get("io.kubernetes.pod.name") == "survivor"]
    assert [c.status for c in running] == ["running"]
    second = await asyncio.create_subprocess_exec(*args, stderr=log)
    try:
        lease = await api.get("coordination.k8s.io/v1", "Lease", "node-e2e",
                              namespace="kube-node-lease")

        async def renewed() -> bool:
            now = await api.get("coordination.k8s.io/v1", "Lease", "node-e2e",
                                namespace="kube-node-lease")
            return bool(now["spec"]["renewTime"] != lease["spec"]["renewTime"])

        await wait_for(renewed, timeout=30, what="the second agent's lease")
        await asyncio.sleep(2)  # a relist and a sync of the re-adopted pod
        after = await pod_where(api, "survivor", lambda p: _cond(p, "Ready") == "True")
    finally:
        if second.returncode is None:
            second.terminate()
        await second.wait()
    assert second.returncode == 0  # SIGTERM: a clean stop
    assert _main(after)["restartCount"] == 0
    assert _main(after)["containerID"] == _main(before)["containerID"]
    assert [c.pid for c in await runtime.list()
            if c.labels.get("io.kubernetes.pod.name") == "survivor"] == [running[0].pid]


async def test_host_network_pod(live: Live, api: Client, setup: HostSetup, busybox: str) -> None:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = {"httpGet": {"path": "/", "port": port, "host": "127.0.0.1"}, "periodSeconds": 1}
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod(
            "hostnet", busybox, ["sh", "-c", f"mkdir -p /www; echo hi > /www/index.html; "
                                 f"exec httpd -f -p 127.0.0.1:{port} -h /www"],
            hostNetwork=True, container={"readinessProbe": probe}))
        pod = await pod_where(api, "hostnet", lambda p: _cond(p, "Ready") == "True", timeout=30)
        assert pod["status"]["podIP"] == "127.0.0.1"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        assert b"hi" in await reader.read()
        writer.close()


async def test_cluster_dns_and_service_env(live: Live, api: Client, setup: HostSetup,
                                           busybox: str) -> None:
    svc = await api.create({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "web-svc", "namespace": "default"},
                            "spec": {"ports": [{"port": 8080, "name": "http"}],
                                     "selector": {"app": "web"}}})
    ip = svc["spec"]["clusterIP"]
    async with agent(live.kubeconfig, setup):
        pod = await api.create(busybox_pod("dns", busybox, [
            "sh", "-c", "cat /etc/resolv.conf; echo SVC=$WEB_SVC_SERVICE_HOST:"
            "$WEB_SVC_SERVICE_PORT_HTTP; nslookup web-svc; exec sleep 3600"]))
        log = setup.data_dir / "pods" / pod["metadata"]["uid"] / "logs" / "main" / "0.log"
        text = await wait_for(lambda: _read_when(log, "Address"), timeout=30,
                              what="nslookup output")
        gateway = str(ipaddress.ip_network(setup.pod_cidr).network_address + 1)
        assert f"nameserver {gateway}" in text
        assert "search default.svc.cluster.local svc.cluster.local cluster.local" in text
        assert f"SVC={ip}:8080" in text
        await wait_for(lambda: _read_when(log, ip), timeout=10, what="the Service's address")


async def test_pod_that_completes_succeeds(live: Live, api: Client, setup: HostSetup,
                                           busybox: str) -> None:
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod("job", busybox, ["sh", "-c", "echo done"],
                                     restartPolicy="Never"))
        pod = await pod_where(api, "job", lambda p: p["status"].get("phase") == "Succeeded")
        term = _main(pod)["state"]["terminated"]
        assert term["exitCode"] == 0 and term["reason"] == "Completed"
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
        assert pod["status"]["podIP"]
        await asyncio.sleep(2)  # never restarted
        again = await api.get("v1", "Pod", "job", namespace="default")
        assert _main(again)["restartCount"] == 0
        assert again["status"]["phase"] == "Succeeded"


async def test_startup_probe_gates_started_and_ready(live: Live, api: Client, setup: HostSetup,
                                                     busybox: str) -> None:
    startup = {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1,
               "failureThreshold": 30}
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod(
            "slow", busybox, ["sh", "-c", "sleep 3; touch /tmp/started; exec sleep 3600"],
            container={"startupProbe": startup}))
        pod = await pod_where(api, "slow", lambda p: _main(p).get("state", {}).get("running"))
        assert _main(pod)["started"] is False and _cond(pod, "Ready") == "False"
        pod = await pod_where(api, "slow", lambda p: _cond(p, "Ready") == "True", timeout=30)
        assert _main(pod)["started"] is True and _main(pod)["restartCount"] == 0


async def test_pre_stop_hook_runs_before_sigterm(live: Live, api: Client, setup: HostSetup,
                                                 busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod(
            "hooked", busybox,
            ["sh", "-c", "trap 'echo term >> /out/log; exit 0' TERM; "
                         "while true; do sleep 0.2; done"],
            container={"volumeMounts": [{"name": "out", "mountPath": "/out"}],
                       "lifecycle": {"preStop": {"exec": {"command": [
                           "sh", "-c", "echo prestop >> /out/log"]}}}},
            volumes=[{"name": "out", "hostPath": {"path": str(out),
                                                  "type": "DirectoryOrCreate"}}]))
        await pod_where(api, "hooked", lambda p: _cond(p, "Ready") == "True")
        await api.delete("v1", "Pod", "hooked", namespace="default")

        async def gone() -> bool:
            try:
                await api.get("v1", "Pod", "hooked", namespace="default")
            except NotFoundError:
                return True
            return False

        await wait_for(gone, timeout=20, what="pod deleted")
    assert (out / "log").read_text().split() == ["prestop", "term"]


async def test_pod_bound_later_is_picked_up(live: Live, api: Client, setup: HostSetup,
                                            busybox: str) -> None:
    async with agent(live.kubeconfig, setup):
        pod = busybox_pod("late", busybox, ["sleep", "3600"])
        del pod["spec"]["nodeName"]
        await api.create(pod)
        await asyncio.sleep(1)
        assert (await api.get("v1", "Pod", "late", namespace="default"))["status"]["phase"] \
            == "Pending"
        await api.request("POST", "/api/v1/namespaces/default/pods/late/binding", body={
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "late"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-e2e"}})
        await pod_where(api, "late", lambda p: _cond(p, "Ready") == "True", timeout=30)


async def test_memory_limit_oom_killed(live: Live, api: Client, setup: HostSetup,
                                       busybox: str) -> None:
    caps = (await setup.drivers()).runtime.capabilities
    if not caps.memory_limits:
        pytest.skip(f"{caps.name} cannot enforce memory limits here ({caps.cgroup_mode})")
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod(
            "hog", busybox, ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); sleep 1"],
            restartPolicy="Never",
            container={"resources": {"limits": {"memory": "32Mi"}}}))
        pod = await pod_where(api, "hog", lambda p: p["status"].get("phase") == "Failed",
                              timeout=60)
        term = _main(pod)["state"]["terminated"]
        assert term["reason"] == "OOMKilled" and term["exitCode"] == 137


async def test_image_update_replaces_container(live: Live, api: Client, setup: HostSetup,
                                               busybox: str) -> None:
    newer = busybox.rsplit(":", 1)[0] + ":2"
    async with agent(live.kubeconfig, setup):
        await api.create(busybox_pod("upd", busybox, ["sleep", "3600"]))
        before = await pod_where(api, "upd", lambda p: _cond(p, "Ready") == "True")
        await api.patch("v1", "Pod", "upd", {"spec": {"containers": [
            {"name": "main", "image": newer}]}}, namespace="default", type="strategic")
        after = await pod_where(api, "upd", lambda p: _main(p).get("restartCount") == 1
                                and _cond(p, "Ready") == "True", timeout=30)
        assert _main(after)["image"] == newer
        assert _main(after)["containerID"] != _main(before)["containerID"]
        events = (await api.list("v1", "Event", namespace="default"))["items"]
        assert any(e["reason"] == "Killing" and e["message"]
                   == "Container main definition changed, will be restarted" for e in events)
