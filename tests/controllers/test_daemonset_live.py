"""The DaemonSet controller against a real apiserver; the test plays the
scheduler (binds pods) and the node agent (pod status, Node objects)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from kubevisor.client import Client
from kubevisor.controllers.daemonset import target_node
from tests.controllers.nodeplay import (
    bind,
    eventually,
    finish_deletions,
    kubectl,
    namespace,
    node,
    pods,
    run_ready,
)

NS = "ds"


def daemonset(*, node_selector: dict[str, str] | None = None,
              max_unavailable: int | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "c", "image": "agent:1"}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "agent"}},
                            "template": {"metadata": {"labels": {"app": "agent"}},
                                         "spec": pod_spec}}
    if max_unavailable is not None:
        spec["updateStrategy"] = {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": max_unavailable}}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": NS}, "spec": spec}


async def placement(api: Client) -> dict[str, list[str]]:
    """node -> names of the live daemon pods aimed at it."""
    out: dict[str, list[str]] = {}
    for name, pod in (await pods(api, NS, "app=agent")).items():
        if not pod["metadata"].get("deletionTimestamp"):
            out.setdefault(target_node(pod), []).append(name)
    return out


async def on_nodes(api: Client, expected: set[str]) -> bool:
    got = await placement(api)
    return set(got) == expected and all(len(v) == 1 for v in got.values())


async def test_one_pod_per_node_follows_nodes_added_removed_and_tainted(api: Client) -> None:
    await namespace(api, NS)
    for name in ("n1", "n2"):
        await api.create(node(name))
    ds = await api.create(daemonset())
    await eventually(lambda: on_nodes(api, {"n1", "n2"}), what="a pod on n1 and n2")
    pod = next(iter((await pods(api, NS, "app=agent")).values()))
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["uid"] == ds["metadata"]["uid"] and ref["controller"] and ref["blockOwnerDeletion"]
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["key"] == "metadata.name"
    keys = {(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]}
    assert {("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule")} <= keys
    assert pod["metadata"]["labels"]["controller-revision-hash"]

    await api.create(node("n3"))
    await eventually(lambda: on_nodes(api, {"n1", "n2", "n3"}), what="a pod on the new node")
    await api.delete("v1", "Node", "n2")
    await eventually(lambda: on_nodes(api, {"n1", "n3"}), what="the removed node's pod deleted")

    # NoSchedule keeps an existing pod, NoExecute evicts it; no new pod on a tainted node
    await api.patch("v1", "Node", "n3", {"spec": {"taints": [
        {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})
    await asyncio.sleep(0.5)
    assert await on_nodes(api, {"n1", "n3"})
    await api.patch("v1", "Node", "n3", {"spec": {"taints": [
        {"key": "dedicated", "value": "db", "effect": "NoExecute"}]}})
    await eventually(lambda: on_nodes(api, {"n1"}), what="evicted by NoExecute")
    await api.create(node("n4", taints=[{"key": "dedicated", "effect": "NoSchedule"}]))
    await api.create(node("n5", taints=[{"key": "node.kubernetes.io/unschedulable",
                                         "effect": "NoSchedule"}]))
    await eventually(lambda: on_nodes(api, {"n1", "n5"}), what="tolerated taint only")
    await api.patch("v1", "Node", "n4", {"spec": {"taints": None}})
    await eventually(lambda: on_nodes(api, {"n1", "n4", "n5"}), what="untainted node")

    async def status() -> bool:
        st = (await api.get("apps/v1", "DaemonSet", "agent", namespace=NS)).get("status", {})
        return bool(st.get("desiredNumberScheduled") == 3
                    and st.get("currentNumberScheduled") == 3
                    and st.get("updatedNumberScheduled") == 3
                    and st.get("numberReady") == 0 and st.get("numberMisscheduled") == 0)

    await eventually(status, what="status counts")


async def test_node_selector_and_misscheduled(api: Client) -> None:
    await namespace(api, NS)
    await api.create(node("a", labels={"role": "edge"}))
    await api.create(node("b"))
    await api.create(daemonset(node_selector={"role": "edge"}))
    await eventually(lambda: on_nodes(api, {"a"}), what="only the labelled node")
    await api.patch("v1", "Node", "b", {"metadata": {"labels": {"role": "edge"}}})
    await eventually(lambda: on_nodes(api, {"a", "b"}), what="newly labelled node")
    await api.patch("v1", "Node", "a", {"metadata": {"labels": {"role": None}}})
    await eventually(lambda: on_nodes(api, {"b"}), what="unlabelled node's pod removed")


async def test_rolling_update_respects_max_unavailable(api: Client) -> None:
    await namespace(api, NS)
    nodes = ["r1", "r2", "r3"]
    for name in nodes:
        await api.create(node(name))
    await api.create(daemonset(max_unavailable=1))
    await eventually(lambda: on_nodes(api, set(nodes)))

    async def schedule_and_run() -> None:
        """Play the scheduler and agent: bind new pods, report them Running and Ready."""
        await finish_deletions(api, NS)
        for name, pod in (await pods(api, NS, "app=agent")).items():
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if not pod["spec"].get("nodeName"):
                await bind(api, NS, name, target_node(pod))
            if pod.get("status", {}).get("phase") != "Running":
                await run_ready(api, NS, name)

    await schedule_and_run()

    async def rolled(image: str) -> bool:
        st = (await api.get("apps/v1", "DaemonSet", "agent", namespace=NS))["status"]
        return bool(st.get("updatedNumberScheduled") == 3 and st.get("numberAvailable") == 3
                    and st.get("observedGeneration") == st.get("observedGeneration")
                    and all(p["spec"]["containers"][0]["image"] == image
                            for p in (await pods(api, NS, "app=agent")).values()))

    await eventually(lambda: rolled("agent:1"), what="all available")
    ds = await api.get("apps/v1", "DaemonSet", "agent", namespace=NS)
    body = copy.deepcopy(ds)
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    await api.update(body)
    max_seen = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await rolled("agent:2"):
        assert loop.time() < deadline, "rolling update did not finish"
        await asyncio.sleep(0.3)  # let the controller act, then look
        current = await pods(api, NS, "app=agent")
        serving = {target_node(p) for p in current.values()
                   if not p["metadata"].get("deletionTimestamp")
                   and p.get("status", {}).get("phase") == "Running"}
        down = len(set(nodes) - serving)
        max_seen = max(max_seen, down)
        await schedule_and_run()
    assert max_seen == 1, f"{max_seen} nodes were without an available pod at once"


async def test_kubectl_rollout_status(api: Client, tmp_path: Path) -> None:
    await namespace(api, NS)
    for name in ("k1", "k2"):
        await api.create(node(name))
    await api.create(daemonset())
    rollout = asyncio.create_task(kubectl(
        tmp_path / "kubeconfig", "-n", NS, "rollout", "status", "daemonset/agent",
        "--timeout=60s"))
    while not rollout.done():  # scheduler and agent
        for name, pod in (await pods(api, NS, "app=agent")).items():
            if not pod["spec"].get("nodeName"):
                await bind(api, NS, name, target_node(pod))
            if pod.get("status", {}).get("phase") != "Running":
                await run_ready(api, NS, name)
        await asyncio.sleep(0.1)
    out = await rollout
    assert 'daemon set "agent" successfully rolled out' in out, out
    table = await kubectl(tmp_path / "kubeconfig", "-n", NS, "get", "daemonset", "agent")
    assert table.splitlines()[1].split()[:6] == ["agent", "2", "2", "2", "2", "2"], table
    out = await kubectl(tmp_path / "kubeconfig", "-n", NS, "describe", "daemonset", "agent")
    assert "Desired Number of Nodes Scheduled: 2" in out, out


async def test_kubectl_rollout_history_and_undo(api: Client, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    await namespace(api, NS)
    await api.create(node("u1"))
    await api.create(daemonset())

    async def revisions(n: int) -> list[dict[str, Any]] | None:
        got = (await api.list("apps/v1", "ControllerRevision", namespace=NS))["items"]
        return got if len(got) == n else None

    await eventually(lambda: revisions(1), what="first revision")
    await api.patch("apps/v1", "DaemonSet", "agent", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "agent:2"}]}}}}, namespace=NS)
    await eventually(lambda: revisions(2), what="second revision")
    out = await kubectl(kubeconfig, "-n", NS, "rollout", "history", "daemonset/agent")
    assert [line.split()[0] for line in out.splitlines()[2:] if line.strip()] == ["1", "2"], out
    await kubectl(kubeconfig, "-n", NS, "rollout", "undo", "daemonset/agent")
    ds = await api.get("apps/v1", "DaemonSet", "agent", namespace=NS)
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:1"

    async def renumbered() -> bool:
        got = await revisions(2) or []
        return sorted(r["revision"] for r in got) == [2, 3]

    await eventually(renumbered, what="the old revision became the newest")

    async def pod_image() -> bool:
        live = [p for p in (await pods(api, NS, "app=agent")).values()
                if not p["metadata"].get("deletionTimestamp")]
        return len(live) == 1 and live[0]["spec"]["containers"][0]["image"] == "agent:1"

    await eventually(pod_image, what="pod back at agent:1")
