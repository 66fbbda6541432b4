"""Object life cycles through kubectl: ``get -w``, ``wait`` (conditions,
jsonpath, delete), finalizers, cascading deletion (background, foreground,
orphan, with hand-made ownerReferences; the garbage collector runs as a
controller) and namespace termination."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import manifests
from tests.support.server import KUBECTL, KubevisorServer, server_on_store, unique

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-kubectl-lifecycle")]


def eventually(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def background_kubectl(server: KubevisorServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [KUBECTL, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server.kubectl_env(),
    )


def exists(server: KubevisorServer, *args: str) -> bool:
    result = server.kubectl("get", *args, "-o", "name", check=False)
    if result.returncode == 0:
        return True
    assert "NotFound" in result.stderr, result.stderr
    return False


def test_get_watch_streams_changes_until_timeout(server: KubevisorServer, ns: str) -> None:
    server.create_configmap("before", ns)
    started = time.monotonic()
    watch = background_kubectl(
        server,
        "get",
        "configmaps",
        "-n",
        ns,
        "-w",
        "--output-watch-events",
        "--request-timeout=6s",
    )
    time.sleep(1.5)
    server.create_configmap("during", ns)
    server.kubectl("label", "configmap", "during", "-n", ns, "x=y")
    server.kubectl("delete", "configmap", "during", "-n", ns)
    out, err = watch.communicate(timeout=30)
    assert time.monotonic() - started < 25, "the watch did not end with the request timeout"
    events = [line.split()[:2] for line in out.splitlines()[1:] if line.strip()]
    assert events[0] == ["ADDED", "before"], out
    assert events[1:] == [["ADDED", "during"], ["MODIFIED", "during"], ["DELETED", "during"]], (
        out,
        err,
    )


def test_get_watch_only_resumes_from_now(server: KubevisorServer, ns: str) -> None:
    server.create_configmap("old", ns)
    watch = background_kubectl(
        server,
        "get",
        "configmaps",
        "-n",
        ns,
        "--watch-only",
        "-o",
        "name",
        "--request-timeout=4s",
    )
    time.sleep(1.5)
    server.create_configmap("new", ns)
    out, _err = watch.communicate(timeout=30)
    assert out.split() == ["configmap/new"], out


def test_wait_for_condition_set_through_status(server: KubevisorServer, ns: str) -> None:
    server.kubectl("create", "-f", "-", input=manifests.pod("ready", namespace=ns))
    waiter = background_kubectl(
        server, "wait", "-n", ns, "--for=condition=Ready", "pod/ready", "--timeout=30s"
    )
    time.sleep(1.0)
    assert waiter.poll() is None, "wait returned before the condition was set"
    status = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}}
    server.kubectl(
        "patch",
        "pod",
        "ready",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert out.strip() == "pod/ready condition met"

    jp = server.kubectl(
        "wait", "-n", ns, "--for=jsonpath={.status.phase}=Running", "pod/ready", "--timeout=10s"
    )
    assert jp.stdout.strip() == "pod/ready condition met"

    timeout = server.kubectl(
        "wait", "-n", ns, "--for=condition=Initialized", "pod/ready", "--timeout=2s", check=False
    )
    assert timeout.returncode != 0
    assert "timed out waiting for the condition on pods/ready" in timeout.stderr, timeout.stderr


def test_finalizer_holds_object_and_wait_for_delete(server: KubevisorServer, ns: str) -> None:
    server.kubectl(
        "create",
        "-f",
        "-",
        input=manifests.configmap("held", namespace=ns, finalizers=["e2e.kubevisor.test/hold"]),
    )
    out = server.kubectl("delete", "configmap", "held", "-n", ns, "--wait=false").stdout
    assert out.strip() == 'configmap "held" deleted'
    obj = server.kubectl_json("get", "configmap", "held", "-n", ns)
    assert obj["metadata"]["deletionTimestamp"]
    assert obj["metadata"]["finalizers"] == ["e2e.kubevisor.test/hold"]

    waiter = background_kubectl(
        server, "wait", "-n", ns, "--for=delete", "configmap/held", "--timeout=30s"
    )
    time.sleep(1.0)
    assert waiter.poll() is None, "wait --for=delete returned while the finalizer holds"
    server.kubectl(
        "patch",
        "configmap",
        "held",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert out.strip() == "configmap/held condition met"
    assert not exists(server, "configmap", "held", "-n", ns)


def owner_chain(server: KubevisorServer, ns: str, name: str) -> tuple[dict, list[str]]:
    """A ReplicaSet owning two Pods and a ConfigMap owned by one of the Pods."""
    rs = json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"rs": name}},
                "template": {
                    "metadata": {"labels": {"rs": name}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
                },
            },
        }
    )
    pods = [f"{name}-a", f"{name}-b"]
    for pod in pods:  # orphans that match: the ReplicaSet controller adopts them
        server.kubectl("create", "-f", "-",
                       input=manifests.pod(pod, namespace=ns, labels={"rs": name}))
    server.kubectl("create", "-f", "-", input=rs)
    owner = server.kubectl_json("get", "replicaset", name, "-n", ns)

    def adopted() -> bool:
        for pod in pods:
            refs = server.kubectl_json("get", "pod", pod, "-n", ns)["metadata"].get(
                "ownerReferences") or []
            if [r["uid"] for r in refs] != [owner["metadata"]["uid"]]:
                return False
        return True

    eventually(adopted, what="the ReplicaSet to adopt its pods")
    first_pod = server.kubectl_json("get", "pod", pods[0], "-n", ns)
    server.kubectl(
        "create",
        "-f",
        "-",
        input=manifests.configmap(
            f"{name}-grandchild", namespace=ns, owner=manifests.owner_ref(first_pod)
        ),
    )
    return owner, pods


def test_cascade_background(server: KubevisorServer, ns: str) -> None:
    _owner, pods = owner_chain(server, ns, "bg")
    out = server.kubectl("delete", "replicaset", "bg", "-n", ns, "--cascade=background").stdout
    assert out.strip() == 'replicaset.apps "bg" deleted'
    assert not exists(server, "replicaset", "bg", "-n", ns)
    eventually(
        lambda: not any(exists(server, "pod", pod, "-n", ns) for pod in pods),
        what="the garbage collector to delete the dependents",
    )
    eventually(
        lambda: not exists(server, "configmap", "bg-grandchild", "-n", ns),
        what="the garbage collector to delete the grandchild",
    )


def test_cascade_foreground(server: KubevisorServer, ns: str) -> None:
    _owner, pods = owner_chain(server, ns, "fg")
    # hold one dependent with a finalizer: the owner must wait for it
    server.kubectl(
        "patch",
        "pod",
        pods[0],
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["e2e.kubevisor.test/hold"]}}',
    )
    server.kubectl("delete", "replicaset", "fg", "-n", ns, "--cascade=foreground", "--wait=false")
    owner = server.kubectl_json("get", "replicaset", "fg", "-n", ns)
    assert owner["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in owner["metadata"]["finalizers"]
    eventually(lambda: not exists(server, "pod", pods[1], "-n", ns), what="pod b deleted")
    time.sleep(1.0)
    assert exists(server, "replicaset", "fg", "-n", ns), "owner went before a blocking dependent"
    server.kubectl(
        "patch",
        "pod",
        pods[0],
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    waited = server.kubectl(
        "wait", "--for=delete", "replicaset/fg", "-n", ns, "--timeout=60s", check=False
    )
    assert waited.returncode == 0 or "NotFound" in waited.stderr, waited.stderr
    assert not exists(server, "pod", pods[0], "-n", ns)
    assert not exists(server, "replicaset", "fg", "-n", ns)


def test_cascade_foreground_kubectl_waits(server: KubevisorServer, ns: str) -> None:
    _owner, pods = owner_chain(server, ns, "fw")
    out = server.kubectl(
        "delete", "replicaset", "fw", "-n", ns, "--cascade=foreground", "--timeout=60s"
    ).stdout
    assert out.strip() == 'replicaset.apps "fw" deleted'
    # kubectl returned once the owner was gone; with foreground that means dependents first
    assert not any(exists(server, "pod", pod, "-n", ns) for pod in pods)


def test_cascade_orphan(server: KubevisorServer, ns: str) -> None:
    owner, pods = owner_chain(server, ns, "or")
    out = server.kubectl("delete", "replicaset", "or", "-n", ns, "--cascade=orphan").stdout
    assert out.strip() == 'replicaset.apps "or" deleted'
    assert not exists(server, "replicaset", "or", "-n", ns)
    time.sleep(2.0)  # give a (wrong) garbage collector time to act
    for pod in pods:
        obj = server.kubectl_json("get", "pod", pod, "-n", ns)
        refs = obj["metadata"].get("ownerReferences", [])
        assert all(ref["uid"] != owner["metadata"]["uid"] for ref in refs), refs
    assert exists(server, "configmap", "or-grandchild", "-n", ns)


def test_dangling_owner_reference_is_collected(server: KubevisorServer, ns: str) -> None:
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "never-existed",
            "uid": "00000000-0000-4000-8000-000000000000",
        },
    }
    server.kubectl(
        "create",
        "-f",
        "-",
        input=manifests.configmap("orphaned", namespace=ns, owner=manifests.owner_ref(ghost)),
    )
    eventually(
        lambda: not exists(server, "configmap", "orphaned", "-n", ns),
        what="an object whose owner does not exist to be collected",
    )


def test_namespace_deletion_removes_content(server: KubevisorServer) -> None:
    name = unique("doomed")
    server.create_namespace(name)
    server.create_configmap("c1", name, {"a": "b"})
    server.kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s1", "namespace": name},
                "stringData": {"a": "b"},
            }
        ),
    )
    server.kubectl("create", "-f", "-", input=manifests.pod("p1", namespace=name))
    server.apply_yaml(manifests.deployment("d1", namespace=name))
    server.kubectl(
        "create",
        "-f",
        "-",
        input=manifests.configmap("held", namespace=name, finalizers=["e2e.kubevisor.test/hold"]),
    )

    out = server.kubectl("delete", "namespace", name, "--wait=false").stdout
    assert out.strip() == f'namespace "{name}" deleted'
    obj = server.kubectl_json("get", "namespace", name)
    assert obj["status"]["phase"] == "Terminating"
    assert obj["metadata"]["deletionTimestamp"]
    refused = server.kubectl(
        "create", "-f", "-", input=manifests.configmap("late", namespace=name), check=False
    )
    assert refused.returncode == 1
    assert (
        f"unable to create new content in namespace {name} because it is being terminated"
    ) in refused.stderr, refused.stderr

    eventually(
        lambda: (
            server.kubectl("get", "configmaps", "-n", name, "-o", "name").stdout.split()
            == ["configmap/held"]
        ),
        what="the namespace controller to delete everything but the held configmap",
    )
    for kind in ("secrets", "pods", "deployments"):
        assert server.kubectl("get", kind, "-n", name, "-o", "name").stdout.split() == [], kind
    assert exists(server, "namespace", name)
    def conditions() -> dict[str, str]:
        status = server.kubectl_json("get", "namespace", name)["status"]
        return {c["type"]: c["status"] for c in status.get("conditions", [])}

    # the controller reports once it has seen the held object stay
    eventually(lambda: conditions().get("NamespaceFinalizersRemaining") == "True",
               what="NamespaceFinalizersRemaining=True on the namespace")

    server.kubectl(
        "patch",
        "configmap",
        "held",
        "-n",
        name,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    waited = server.kubectl(
        "wait", "--for=delete", f"namespace/{name}", "--timeout=60s", check=False
    )
    assert waited.returncode == 0 or "NotFound" in waited.stderr, waited.stderr
    assert not exists(server, "namespace", name)


def test_namespace_delete_waits_until_gone(server: KubevisorServer) -> None:
    name = unique("quick")
    server.create_namespace(name)
    for i in range(5):
        server.create_configmap(f"c{i}", name)
    out = server.kubectl("delete", "namespace", name, "--timeout=60s").stdout
    assert out.strip() == f'namespace "{name}" deleted'
    missing = server.kubectl("get", "namespace", name, check=False)
    assert missing.stderr.strip() == f'Error from server (NotFound): namespaces "{name}" not found'
    # a namespace of the same name starts empty
    server.create_namespace(name)
    assert server.kubectl("get", "configmaps", "-n", name, "-o", "name").stdout.split() == []
    server.kubectl("delete", "namespace", name, "--wait=false")


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public"])
def test_system_namespaces_may_not_be_deleted(tmp_path: Path, name: str) -> None:
    # a server of its own: a wrongly accepted deletion must not hurt the other tests
    with server_on_store("sqlite", tmp_path) as server:
        check_system_namespace_survives(server, name)


def check_system_namespace_survives(server: KubevisorServer, name: str) -> None:
    result = server.kubectl("delete", "namespace", name, "--wait=false", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f'Error from server (Forbidden): namespaces "{name}" is forbidden: '
        "this namespace may not be deleted"
    ), result.stderr
    obj = server.kubectl_json("get", "namespace", name)
    assert "deletionTimestamp" not in obj["metadata"]
    assert obj["status"]["phase"] == "Active"


def test_graceful_pod_deletion(server: KubevisorServer, ns: str) -> None:
    """A pod bound to a node waits for its kubelet (Terminating, 30 s grace);
    an unbound pod goes at once; --force --grace-period=0 removes it."""
    server.kubectl("create", "-f", "-", input=manifests.pod("loose", namespace=ns))
    server.kubectl("delete", "pod", "loose", "-n", ns, "--timeout=30s")
    assert not exists(server, "pod", "loose", "-n", ns)

    bound = manifests.pod("bound", namespace=ns, extra_spec={"nodeName": "node-x"})
    server.kubectl("create", "-f", "-", input=bound)
    server.kubectl("delete", "pod", "bound", "-n", ns, "--wait=false")
    meta = server.kubectl_json("get", "pod", "bound", "-n", ns)["metadata"]
    assert meta["deletionTimestamp"] and meta["deletionGracePeriodSeconds"] == 30
    out = server.kubectl("get", "pod", "bound", "-n", ns).stdout
    assert "Terminating" in out, out
    forced = server.kubectl("delete", "pod", "bound", "-n", ns, "--grace-period=0", "--force")
    assert forced.stdout.strip() == 'pod "bound" force deleted'
    assert not exists(server, "pod", "bound", "-n", ns)
