"""Pure tests of env, command and user resolution, and of volume files."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from kubevisor.node import env, volumes
from kubevisor.node.env import ConfigError, Sources
from kubevisor.runtime.types import ImageConfig

POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"},
                 "annotations": {"a": "b"}},
    "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": [
        {"name": "c", "image": "busybox", "resources": {"limits": {"memory": "64Mi",
                                                                   "cpu": "500m"}}}]},
}
CM = {"kind": "ConfigMap", "data": {"k1": "v1", "k2": "v2"}}
SECRET = {"kind": "Secret", "data": {"pw": base64.b64encode(b"s3cret").decode()}}
SRC = Sources(configmaps={"cfg": CM}, secrets={"sec": SECRET}, pod_ip="10.1.0.5",
              host_ip="192.0.2.1",
              services=[{"metadata": {"name": "redis-master"},
                         "spec": {"clusterIP": "10.96.0.11", "ports": [
                             {"name": "db", "port": 6379, "protocol": "TCP"}]}}])


def test_env_order_refs_and_expansion() -> None:
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
         "env": [
             {"name": "A", "value": "x"},
             {"name": "B", "value": "$(A)-$(NOPE)-$$(A)"},
             {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "APP", "valueFrom": {"fieldRef": {
                 "fieldPath": "metadata.labels['app']"}}},
             {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
             {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                 "resource": "limits.memory", "divisor": "1Mi"}}},
             {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
             {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k2"}}},
             {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
             {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "x",
                                                            "optional": True}}},
         ],
         "resources": POD["spec"]["containers"][0]["resources"]}
    out = env.container_env(POD, c, SRC, image=ImageConfig(env=["PATH=/bin", "A=img"]))
    assert out["PATH"] == "/bin"
    assert out["A"] == "x" and out["B"] == "x-$(NOPE)-$(A)"
    assert out["POD"] == "web" and out["APP"] == "web" and out["IP"] == "10.1.0.5"
    assert out["MEM"] == "64" and out["CPU"] == "1"
    assert out["K"] == "v2" and out["CM_k1"] == "v1" and out["PW"] == "s3cret"
    assert "OPT" not in out
    assert out["REDIS_MASTER_SERVICE_HOST"] == "10.96.0.11"
    assert out["REDIS_MASTER_SERVICE_PORT"] == "6379"
    assert out["REDIS_MASTER_SERVICE_PORT_DB"] == "6379"
    assert out["REDIS_MASTER_PORT"] == "tcp://10.96.0.11:6379"
    assert out["REDIS_MASTER_PORT_6379_TCP_ADDR"] == "10.96.0.11"
    no_links = {**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}
    assert "REDIS_MASTER_SERVICE_HOST" not in env.container_env(no_links, {"name": "c"}, SRC)


def test_missing_refs_raise_kubelet_messages() -> None:
    with pytest.raises(ConfigError, match=r'^configmap "nope" not found$'):
        env.container_env(POD, {"name": "c", "env": [{"name": "X", "valueFrom": {
            "configMapKeyRef": {"name": "nope", "key": "a"}}}]}, SRC)
    with pytest.raises(ConfigError, match=r"^couldn't find key zz in ConfigMap ns/cfg$"):
        env.container_env(POD, {"name": "c", "env": [{"name": "X", "valueFrom": {
            "configMapKeyRef": {"name": "cfg", "key": "zz"}}}]}, SRC)
    with pytest.raises(ConfigError, match=r'^secret "s" not found$'):
        env.container_env(POD, {"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}, SRC)
    assert env.references({"spec": {"containers": [{"envFrom": [{"configMapRef": {
        "name": "a"}}]}], "volumes": [{"name": "v", "secret": {"secretName": "b"}}]}}) == (
        {"a"}, {"b"})


def test_command_merge() -> None:
    img = ImageConfig(entrypoint=["/entry"], cmd=["--default"])
    e = {"X": "1"}
    assert env.command({}, img, e) == ["/entry", "--default"]
    assert env.command({"command": ["sh"]}, img, e) == ["sh"]
    assert env.command({"args": ["$(X)"]}, img, e) == ["/entry", "1"]
    assert env.command({"command": ["sh"], "args": ["-c", "x"]}, img, e) == ["sh", "-c", "x"]
    with pytest.raises(ConfigError):
        env.command({}, ImageConfig(), e)


def test_user_and_resources() -> None:
    passwd = "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    assert env.user(POD, {}, ImageConfig(user="nobody"), passwd=passwd) == (65534, 65534)
    assert env.user(POD, {}, ImageConfig(user="1000:50")) == (1000, 50)
    pod = {"spec": {"securityContext": {"runAsUser": 5}}}
    assert env.user(pod, {"securityContext": {"runAsGroup": 7}}, ImageConfig()) == (5, 7)
    with pytest.raises(ConfigError, match="unable to find user bob"):
        env.user(POD, {}, ImageConfig(user="bob"), passwd=passwd)
    r = env.resources(POD["spec"]["containers"][0])
    assert r.cpu_limit_millis == 500 and r.memory_limit_bytes == 64 * 1024 * 1024


def test_volume_files_and_atomic_writer(tmp_path: Path) -> None:
    vol = {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k1", "path": "d/one"}],
                                      "defaultMode": 0o600}}
    files = volumes.volume_files(POD, vol, SRC)
    assert files == {"d/one": volumes.File(b"v1", 0o600)}
    with pytest.raises(volumes.MountError, match='configmap "x" not found'):
        volumes.volume_files(POD, {"name": "v", "configMap": {"name": "x"}}, SRC)
    dw = volumes.volume_files(POD, {"name": "d", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}, SRC)
    assert dw is not None and dw["labels"].data == b'app="web"' and dw["name"].data == b"web"
    proj = volumes.volume_files(POD, {"name": "p", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}}, {"secret": {"name": "sec"}}]}}, SRC,
        token="tok")
    assert proj is not None and proj["token"].data == b"tok" and proj["pw"].data == b"s3cret"

    target = tmp_path / "vol"
    assert volumes.write_atomic(target, files)
    assert (target / "d" / "one").read_bytes() == b"v1"
    assert (target / "d" / "one").stat().st_mode & 0o777 == 0o600
    assert not volumes.write_atomic(target, files)  # unchanged: no write
    assert volumes.write_atomic(target, {"two": volumes.File(b"2", 0o644)})
    assert (target / "two").read_bytes() == b"2" and not (target / "d").exists()
    assert len([p for p in target.iterdir() if p.name.startswith("..2")]) == 1


def test_setup_volumes_and_mounts(tmp_path: Path) -> None:
    pod = {**POD, "spec": {**POD["spec"], "volumes": [
        {"name": "scratch", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": str(tmp_path / "hp"), "type": "DirectoryOrCreate"}},
        {"name": "cfg", "configMap": {"name": "cfg"}}],
        "containers": [{"name": "c", "volumeMounts": [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
            {"name": "host", "mountPath": "/h", "subPath": "sub"}]}]}}
    paths = volumes.setup_volumes(pod, SRC, data_dir=tmp_path / "data", token="t", ca_pem="CA")
    assert (Path(paths["cfg"]) / "k1").read_text() == "v1"
    assert (tmp_path / "hp").is_dir()
    sa = Path(paths[volumes.SA_VOLUME])
    assert (sa / "token").read_text() == "t" and (sa / "namespace").read_text() == "ns"
    mounts = volumes.container_mounts(pod, pod["spec"]["containers"][0], paths,
                                      etc_dir=tmp_path / "etc")
    dests = {m.destination: m for m in mounts}
    assert dests["/etc/cfg"].read_only and dests["/h"].source == str(tmp_path / "hp" / "sub")
    assert volumes.SA_DIR in dests and "/etc/hosts" in dests
    volumes.write_etc(pod, tmp_path / "etc", pod_ip="10.1.0.5")
    assert "10.1.0.5\tweb" in (tmp_path / "etc" / "hosts").read_text()
    volumes.teardown_volumes(tmp_path / "data", "u-1")
    assert not (tmp_path / "data" / "pods" / "u-1").exists()
    assert os.path.isdir(tmp_path / "hp")


def test_run_as_non_root() -> None:
    env.check_non_root(POD, {"name": "c"}, 0)  # not asked: fine
    pod = {**POD, "spec": {**POD["spec"], "securityContext": {"runAsNonRoot": True}}}
    env.check_non_root(pod, {"name": "c"}, 1000)
    with pytest.raises(ConfigError, match=r'^container has runAsNonRoot and image will run as '
                       r'root \(pod: "web_ns\(u-1\)", container: c\)$'):
        env.check_non_root(pod, {"name": "c"}, 0)


def test_go_duration() -> None:
    from kubevisor.node.starting import go_duration
    assert go_duration(0.5126) == "512ms"
    assert go_duration(1.2345) == "1.234s"
    assert go_duration(2.0) == "2s"
    assert go_duration(123.5) == "2m3.5s"
    assert go_duration(3723.0) == "1h2m3s"
