"""The scheduler's pure parts: requests, filters (with kube's wording),
scores, sampling, the FitError message, the cache's accounting and the
scheduling queue."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from kubevisor.controllers.scheduler import algorithm, filters, scores
from kubevisor.controllers.scheduler.cache import Cache
from kubevisor.controllers.scheduler.podinfo import pod_info
from kubevisor.controllers.scheduler.queue import QueueTimes, SchedulingQueue
from kubevisor.controllers.scheduler.resources import non_zero_requests, pod_requests

MI = 1024**2
GI = 1024**3


def node(name: str, *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
         labels: dict[str, str] | None = None, taints: list[dict] | None = None,
         unschedulable: bool = False) -> dict:
    alloc = {"cpu": cpu, "memory": memory, "pods": pods}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": alloc}}


def pod(name: str = "p", *, cpu: str | None = "100m", memory: str | None = "128Mi",
        labels: dict[str, str] | None = None, ns: str = "default", owner: str = "",
        **spec: Any) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}",
                            "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet",
                                    "name": "rs", "apiVersion": "apps/v1"}]
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "resources": {
        "requests": requests}}], **spec}}


def cache_with(*nodes: dict) -> Cache:
    cache = Cache()
    for n in nodes:
        cache.set_node(n)
    return cache


# -- resources -------------------------------------------------------------------


def test_pod_requests_sum_max_init_sidecars_and_overhead() -> None:
    spec = {"containers": [{"resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                           {"resources": {"limits": {"cpu": "200m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "100Mi"}}},
                               {"restartPolicy": "Always",
                                "resources": {"requests": {"cpu": "50m", "memory": "1Mi"}}}],
            "overhead": {"cpu": "10m", "memory": "1Mi"}}
    req = pod_requests(spec)
    # containers 300m (a limit stands for a missing request) + sidecar 50m,
    # max with the init container (1000m), + overhead 10m.
    assert req.milli_cpu == 1010
    assert req.memory == GI + 2 * MI
    assert pod_requests(spec, {"cpu": "1"}).milli_cpu == 2000  # RuntimeClass overhead instead
    assert non_zero_requests({"containers": [{}]}) == (100, 200 * MI)


def test_runtime_class_overhead_and_scheduling() -> None:
    rc = {"overhead": {"podFixed": {"memory": "64Mi", "cpu": "250m"}},
          "scheduling": {"nodeSelector": {"sandbox": "yes"},
                         "tolerations": [{"key": "sandbox", "operator": "Exists"}]}}
    info = pod_info(pod(runtimeClassName="crx"), rc)
    assert info.requests.milli_cpu == 350 and info.requests.memory == 192 * MI
    assert info.node_selector == {"sandbox": "yes"} and not info.simple
    assert info.tolerations[0].key == "sandbox"


# -- filters -----------------------------------------------------------------------


def _node_info(raw: dict) -> Any:
    return cache_with(raw).nodes[raw["metadata"]["name"]]


def test_resources_fit_reasons() -> None:
    n = _node_info(node("n", cpu="1", memory="1Gi", pods="1"))
    assert filters.resources_fit(pod_info(pod(cpu="500m", memory="512Mi")), n) is None
    cache = cache_with(node("n", cpu="1", memory="1Gi", pods="1"))
    cache.add_pod(pod_info(pod("a", cpu="600m", memory="600Mi")), "n")
    reasons = filters.resources_fit(pod_info(pod("b", cpu="500m", memory="512Mi")),
                                    cache.nodes["n"])
    assert reasons == ("Too many pods", "Insufficient cpu", "Insufficient memory")


def test_taints_tolerations_and_cordon() -> None:
    tainted = _node_info(node("t", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"},
                                           {"key": "soft", "effect": "PreferNoSchedule"}]))
    assert filters.taint_toleration(pod_info(pod()), tainted) == (
        "node(s) had untolerated taint {k: v}",)
    for tol in ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
                {"key": "k", "operator": "Exists"}, {"operator": "Exists"}):
        assert filters.taint_toleration(pod_info(pod(tolerations=[tol])), tainted) is None
    assert filters.taint_toleration(pod_info(pod(tolerations=[
        {"key": "k", "operator": "Equal", "value": "w"}])), tainted) is not None
    noexec = _node_info(node("x", taints=[{"key": "k", "value": "", "effect": "NoExecute"}]))
    assert filters.taint_toleration(pod_info(pod()), noexec) == (
        "node(s) had untolerated taint {k: }",)
    cordoned = _node_info(node("c", unschedulable=True))
    assert filters.node_unschedulable(pod_info(pod()), cordoned) == (
        "node(s) were unschedulable",)
    assert filters.node_unschedulable(pod_info(pod(tolerations=[
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
         "effect": "NoSchedule"}])), cordoned) is None


@pytest.mark.parametrize(("expr", "fits"), [
    ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
    ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
    ({"key": "zone", "operator": "Exists"}, True),
    ({"key": "gpu", "operator": "DoesNotExist"}, True),
    ({"key": "cores", "operator": "Gt", "values": ["8"]}, True),
    ({"key": "cores", "operator": "Lt", "values": ["8"]}, False),
    ({"key": "zone", "operator": "Bogus", "values": ["a"]}, False),
])
def test_node_affinity_operators(expr: dict, fits: bool) -> None:
    n = _node_info(node("n", labels={"zone": "a", "cores": "16"}))
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [expr]}]}}}
    result = filters.node_affinity(pod_info(pod(affinity=aff)), n)
    assert (result is None) is fits


def test_node_affinity_fields_terms_and_selector() -> None:
    n = _node_info(node("n1", labels={"zone": "a"}))
    def aff(*terms: dict) -> dict:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": list(terms)}}}
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    other = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}
    assert filters.node_affinity(pod_info(pod(affinity=aff(by_name))), n) is None
    assert filters.node_affinity(pod_info(pod(affinity=aff(other))), n) is not None
    assert filters.node_affinity(pod_info(pod(affinity=aff(other, by_name))), n) is None  # ORed
    assert filters.node_affinity(pod_info(pod(affinity=aff({}))), n) is not None  # empty term
    assert filters.node_affinity(pod_info(pod(nodeSelector={"zone": "a"})), n) is None
    assert filters.node_affinity(pod_info(pod(nodeSelector={"zone": "b"})), n) == (
        "node(s) didn't match Pod's node affinity/selector",)


def test_host_ports() -> None:
    cache = cache_with(node("n"))
    def with_port(name: str, port: int, ip: str = "", proto: str = "TCP") -> Any:
        p = pod(name)
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": port,
                                                "hostIP": ip, "protocol": proto}]
        return pod_info(p)
    cache.add_pod(with_port("a", 8080, "10.0.0.1"), "n")
    n = cache.nodes["n"]
    assert filters.node_ports(with_port("b", 8080), n) == (
        "node(s) didn't have free ports for the requested pod ports",)
    assert filters.node_ports(with_port("c", 8080, "10.0.0.2"), n) is None
    assert filters.node_ports(with_port("d", 8080, proto="UDP"), n) is None
    assert filters.node_ports(with_port("e", 8081), n) is None


def test_inter_pod_affinity_and_anti_affinity() -> None:
    cache = cache_with(node("a1", labels={"zone": "a"}), node("a2", labels={"zone": "a"}),
                       node("b1", labels={"zone": "b"}))
    cache.add_pod(pod_info(pod("db", labels={"app": "db"})), "a1")
    near_db = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}
    web = pod_info(pod("web", affinity=near_db))
    state = filters.affinity_state(web, cache)
    assert filters.inter_pod_affinity(web, cache.nodes["a2"], state) is None
    assert filters.inter_pod_affinity(web, cache.nodes["b1"], state) == (
        "node(s) didn't match pod affinity rules",)
    away = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}]}}
    loner = pod_info(pod("loner", affinity=away))
    state = filters.affinity_state(loner, cache)
    assert filters.inter_pod_affinity(loner, cache.nodes["a2"], state) == (
        "node(s) didn't match pod anti-affinity rules",)
    assert filters.inter_pod_affinity(loner, cache.nodes["b1"], state) is None
    # An existing pod's anti-affinity keeps matching pods out of its zone.
    cache.add_pod(pod_info(pod("solo", labels={"app": "solo"}, affinity={
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "zone"}]}})), "b1")
    x = pod_info(pod("x", labels={"app": "x"}))
    state = filters.affinity_state(x, cache)
    assert filters.inter_pod_affinity(x, cache.nodes["b1"], state) == (
        "node(s) didn't satisfy existing pods anti-affinity rules",)
    assert filters.inter_pod_affinity(x, cache.nodes["a1"], state) is None
    # The first pod of a self-affine group may go anywhere.
    self_affine = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "new"}}, "topologyKey": "zone"}]}}
    first = pod_info(pod("first", labels={"app": "new"}, affinity=self_affine))
    assert filters.inter_pod_affinity(first, cache.nodes["a1"],
                                      filters.affinity_state(first, cache)) is None


# -- scores --------------------------------------------------------------------------


def test_resource_scores() -> None:
    cache = cache_with(node("n", cpu="4", memory="4Gi"))
    n = cache.nodes["n"]
    p = pod_info(pod(cpu="1", memory="1Gi"))
    assert scores.least_allocated(p, n) == 75
    assert scores.balanced_allocation(p, n) == 100
    cache.add_pod(pod_info(pod("a", cpu="2", memory="0")), "n")
    assert scores.least_allocated(p, n) == (25 + 75) // 2
    assert scores.balanced_allocation(p, n) == int((1 - abs(0.75 - 0.25) / 2) * 100)


def test_normalize_and_owner_spread() -> None:
    assert scores.normalize([0, 5, 10]) == [0, 50, 100]
    assert scores.normalize_reverse([0, 5, 10]) == [100, 50, 0]
    assert scores.normalize_reverse([0, 0]) == [100, 100]
    cache = cache_with(node("a"), node("b"))
    cache.add_pod(pod_info(pod("r1", owner="rs-1")), "a")
    p = pod_info(pod("r2", owner="rs-1"))
    assert scores.owner_spread(p, cache.nodes["a"]) == 1
    assert scores.owner_spread(p, cache.nodes["b"]) == 0


# -- the algorithm ---------------------------------------------------------------------


def test_feasible_to_find_is_adaptive() -> None:
    assert algorithm.feasible_to_find(50) == 50
    assert algorithm.feasible_to_find(5000) == 500  # 50 - 5000/125 = 10%
    assert algorithm.feasible_to_find(1000) == 420
    assert algorithm.feasible_to_find(200) == 100  # never below 100
    assert algorithm.feasible_to_find(100_000) == 5000  # never below 5%
    assert algorithm.feasible_to_find(5000, 100) == 5000


def test_fit_error_message_as_kube() -> None:
    assert algorithm.fit_error(3, {"Insufficient memory": 3}) == (
        "0/3 nodes are available: 3 Insufficient memory.")
    assert algorithm.fit_error(5, {
        "node(s) didn't match Pod's node affinity/selector": 2, "Insufficient cpu": 2,
        "node(s) had untolerated taint {node-role: x}": 1}) == (
        "0/5 nodes are available: 1 node(s) had untolerated taint {node-role: x}, "
        "2 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.")
    assert algorithm.fit_error(0, {}) == "0/0 nodes are available:"


def test_schedule_picks_least_allocated_and_reports_reasons() -> None:
    cache = cache_with(node("busy"), node("idle"), node("small", memory="64Mi"))
    cache.add_pod(pod_info(pod("x", cpu="3", memory="6Gi")), "busy")
    decision, _ = algorithm.schedule(pod_info(pod()), cache, rng=random.Random(0))
    assert decision.node == "idle"
    decision, _ = algorithm.schedule(pod_info(pod(memory="64Gi")), cache)
    assert decision.node is None
    assert algorithm.fit_error(decision.total, decision.reasons) == (
        "0/3 nodes are available: 3 Insufficient memory.")


def test_fast_path_agrees_with_the_general_path() -> None:
    rng = random.Random(7)
    raw = [node(f"n{i}", cpu=str(rng.choice([2, 4, 8])), memory=f"{rng.choice([4, 8, 16])}Gi",
                taints=[{"key": "t", "effect": "NoSchedule"}] if i % 7 == 0 else None,
                unschedulable=i % 11 == 0)
           for i in range(300)]
    cache = cache_with(*raw)
    for i in range(600):
        cache.add_pod(pod_info(pod(f"e{i}", cpu=f"{rng.randint(1, 900)}m",
                                   memory=f"{rng.randint(1, 900)}Mi")),
                      f"n{rng.randrange(300)}")
    for i in range(50):
        p = pod_info(pod(f"q{i}", cpu=f"{rng.randint(1, 2000)}m",
                         memory=f"{rng.randint(1, 4000)}Mi"))
        start = rng.randrange(300)
        fast, _ = algorithm.schedule(p, cache, start=start, rng=random.Random(1))
        feasible, _ = algorithm._filter(p, cache.order, start, algorithm.feasible_to_find(300),
                                        None, {})
        totals = algorithm.score_nodes(p, feasible)
        best = max(totals)
        assert fast.node in {n.name for n, t in zip(feasible, totals, strict=True) if t == best}


def test_sampling_rotates_through_nodes() -> None:
    cache = cache_with(*(node(f"n{i}") for i in range(1000)))
    decision, nxt = algorithm.schedule(pod_info(pod()), cache, start=990)
    assert decision.examined == 420 and nxt == (990 + 420) % 1000


# -- the cache ----------------------------------------------------------------------------


def test_cache_accounting_assume_forget_and_node_removal() -> None:
    cache = cache_with(node("a"), node("b"))
    p = pod_info(pod("p", cpu="1", memory="1Gi"))
    cache.assume(p, "a")
    assert cache.nodes["a"].requested.milli_cpu == 1000 and p.uid in cache.assumed
    cache.forget(p.uid)
    assert cache.nodes["a"].requested.milli_cpu == 0 and not cache.nodes["a"].pods
    cache.confirm(p, "b")
    cache.forget(p.uid)  # confirmed: stays
    assert cache.nodes["b"].requested.memory == GI
    cache.remove_node("b")
    assert [n.name for n in cache.order] == ["a"] and "b" in cache.nodes  # placeholder
    cache.remove_pod(p.uid)
    assert "b" not in cache.nodes
    cache.add_pod(pod_info(pod("q")), "later")  # a pod on a node not seen yet
    assert len(cache) == 1
    cache.set_node(node("later"))
    assert len(cache) == 2 and len(cache.nodes["later"].pods) == 1


# -- the queue -------------------------------------------------------------------------------


async def test_queue_priority_backoff_and_moves() -> None:
    q = SchedulingQueue(QueueTimes(initial_backoff=0.05, max_backoff=0.2, retry_interval=60))
    low, high = pod_info(pod("low")), pod_info(pod("high", priority=10))
    q.add(low)
    q.add(high)
    assert (await q.pop()).name == "high"
    q.unschedulable(high.key)
    assert q.counts()["unschedulable"] == 1
    assert (await q.pop()).name == "low"
    q.done(low.key)
    assert q.move_all() == 1  # a cluster event: back through back-off
    await asyncio.sleep(0.06)
    q.flush()
    assert (await asyncio.wait_for(q.pop(), 1)).name == "high"
    # An event while it is being scheduled: not parked as unschedulable.
    q.move_all()
    q.unschedulable(high.key)
    assert q.counts()["backoff"] == 1 and q.counts()["unschedulable"] == 0
    q.delete(high.key)
    assert len(q) == 0


def test_replicas_of_one_owner_spread_over_nodes() -> None:
    cache = cache_with(node("a"), node("b"), node("c"))
    rng = random.Random(3)
    placed = []
    for i in range(3):
        p = pod_info(pod(f"r{i}", owner="rs-1"))
        decision, _ = algorithm.schedule(p, cache, rng=rng)
        assert decision.node is not None
        cache.assume(p, decision.node)
        placed.append(decision.node)
    assert sorted(placed) == ["a", "b", "c"]


def test_preferred_node_affinity_wins() -> None:
    cache = cache_with(node("a", labels={"disk": "hdd"}), node("b", labels={"disk": "ssd"}))
    prefer = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}
    for seed in range(5):
        decision, _ = algorithm.schedule(pod_info(pod(affinity=prefer)), cache,
                                         rng=random.Random(seed))
        assert decision.node == "b"


def test_which_pod_updates_count() -> None:
    from kubevisor.controllers.scheduler.scheduler import _relevant_change

    old = pod("p")
    bound = {**old, "spec": {**old["spec"], "nodeName": "n"}}
    status_only = {**bound, "status": {"phase": "Running"}}
    relabelled = {**bound, "metadata": {**bound["metadata"], "labels": {"app": "x"}}}
    assert not _relevant_change(old, bound)  # the binding alone
    assert not _relevant_change(bound, status_only)
    assert _relevant_change(bound, relabelled)
    resized = {**bound, "spec": {**bound["spec"], "containers": []}}
    assert _relevant_change(old, resized)
