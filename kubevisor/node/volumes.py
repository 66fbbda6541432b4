"""A pod's volumes on the host, and the mounts each container gets.

:func:`volume_files` is pure: the files (path → bytes, mode) a configMap,
secret, downwardAPI or projected volume holds. :func:`setup_volumes`
writes them under ``<data-dir>/pods/<uid>/volumes/<kind>/<name>`` with
kubelet's atomic layout (a timestamped directory, ``..data`` pointing to
it, one symlink per top-level entry) so a later call swaps the content in
one rename (kept updated); emptyDir is a directory (a tmpfs when
``medium: Memory`` and we are root); hostPath is the host's path.
:func:`container_mounts` maps ``volumeMounts`` (with subPath and
readOnly) to runtime :class:`~kubevisor.runtime.types.Mount` s, adding
the service account directory and /etc/hosts, /etc/hostname. Called by
the pod worker.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubevisor.node.env import ConfigError, Sources, field_value, format_map, resource_value
from kubevisor.runtime.types import Mount

JSON = dict[str, Any]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_VOLUME = "kube-api-access-kubevisor"


class MountError(Exception):
    """A volume cannot be set up (kubelet's FailedMount)."""


@dataclass(frozen=True, slots=True)
class File:
    data: bytes
    mode: int


def _cm_data(obj: JSON) -> dict[str, bytes]:
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    if obj.get("kind") == "Secret":
        out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


def _keyed(src: JSON, data: Mapping[str, bytes], default_mode: int, *, what: str,
           name: str) -> dict[str, File]:
    items = src.get("items")
    if not items:
        return {k: File(v, default_mode) for k, v in data.items()}
    out = {}
    for item in items:
        key = item.get("key")
        if key not in data:
            if src.get("optional"):
                continue
            raise MountError(f'configmap references non-existent config key: {key}'
                             if what == "configmap"
                             else f"references non-existent secret key: {key}")
        out[item.get("path", key)] = File(data[key], item.get("mode", default_mode))
    return out


def volume_files(pod: JSON, volume: JSON, src: Sources, *, token: str = "",
                 ca_pem: str = "") -> dict[str, File] | None:
    """The files of a file-backed volume; None for other kinds."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    if "configMap" in volume or "secret" in volume:
        is_cm = "configMap" in volume
        spec = volume["configMap" if is_cm else "secret"]
        name = spec.get("name" if is_cm else "secretName", "")
        obj = (src.configmaps if is_cm else src.secrets).get(name)
        if obj is None:
            if spec.get("optional"):
                return {}
            raise MountError(f'{"configmap" if is_cm else "secret"} "{name}" not found')
        return _keyed(spec, _cm_data(obj), spec.get("defaultMode", 0o644),
                      what="configmap" if is_cm else "secret", name=name)
    if "downwardAPI" in volume:
        spec = volume["downwardAPI"]
        return _downward(pod, spec.get("items") or [], spec.get("defaultMode", 0o644), src)
    if "projected" in volume:
        spec = volume["projected"]
        mode = spec.get("defaultMode", 0o644)
        out: dict[str, File] = {}
        for s in spec.get("sources") or []:
            if "configMap" in s or "secret" in s:
                is_cm = "configMap" in s
                sub = s["configMap" if is_cm else "secret"]
                obj = (src.configmaps if is_cm else src.secrets).get(sub.get("name", ""))
                if obj is None:
                    if sub.get("optional"):
                        continue
                    raise MountError(f'{"configmap" if is_cm else "secret"} '
                                     f'"{sub.get("name")}" not found')
                out.update(_keyed(sub, _cm_data(obj), mode,
                                  what="configmap" if is_cm else "secret",
                                  name=sub.get("name", "")))
            elif "downwardAPI" in s:
                out.update(_downward(pod, s["downwardAPI"].get("items") or [], mode, src))
            elif "serviceAccountToken" in s:
                out[s["serviceAccountToken"].get("path", "token")] = File(token.encode(), mode)
        return out
    if volume.get("name") == SA_VOLUME:
        return {"token": File(token.encode(), 0o644), "ca.crt": File(ca_pem.encode(), 0o644),
                "namespace": File(ns.encode(), 0o644)}
    return None


def _downward(pod: JSON, items: list[JSON], mode: int, src: Sources) -> dict[str, File]:
    out = {}
    containers = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
    for item in items:
        if "fieldRef" in item:
            path = item["fieldRef"].get("fieldPath", "")
            md = pod.get("metadata") or {}
            if path in ("metadata.labels", "metadata.annotations"):
                value = format_map(md.get(path.split(".")[1]) or {})
            else:
                try:
                    value = field_value(pod, path, src)
                except ConfigError as exc:
                    raise MountError(str(exc)) from exc
        elif "resourceFieldRef" in item:
            ref = item["resourceFieldRef"]
            value = resource_value(containers.get(ref.get("containerName", ""), {}), ref,
                                   allocatable={})
        else:
            continue
        out[item["path"]] = File(value.encode(), item.get("mode", mode))
    return out


def pod_dir(data_dir: Path, uid: str) -> Path:
    return data_dir / "pods" / uid


def volume_kind(volume: JSON) -> str:
    for kind in ("emptyDir", "configMap", "secret", "hostPath", "downwardAPI", "projected"):
        if kind in volume:
            return kind
    return "serviceaccount" if volume.get("name") == SA_VOLUME else "unknown"


def write_atomic(target: Path, files: Mapping[str, File]) -> bool:
    """Make ``target`` hold exactly ``files`` (kubelet's atomic writer);
    True when something changed."""
    target.mkdir(parents=True, exist_ok=True)
    current = target / "..data"
    if current.exists():
        old = {}
        for path in Path(current).resolve().rglob("*"):
            if path.is_file():
                rel = str(path.relative_to(current.resolve()))
                old[rel] = File(path.read_bytes(), path.stat().st_mode & 0o777)
        if old == dict(files):
            return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 10**9}"
    stamp.mkdir()
    for rel, f in files.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.data)
        os.chmod(path, f.mode)
    tmp = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    old_dir = current.resolve() if current.exists() else None
    tmp.rename(current)
    tops = {rel.split("/")[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old_dir is not None and old_dir != stamp.resolve():
        shutil.rmtree(old_dir, ignore_errors=True)
    return True


def setup_volumes(pod: JSON, src: Sources, *, data_dir: Path, token: str = "",
                  ca_pem: str = "") -> dict[str, str]:
    """Prepare every volume of ``pod``; name → host path. Raises MountError."""
    uid = (pod.get("metadata") or {})["uid"]
    base = pod_dir(data_dir, uid) / "volumes"
    out: dict[str, str] = {}
    for volume in all_volumes(pod):
        name, kind = volume["name"], volume_kind(volume)
        if kind == "hostPath":
            hp = volume["hostPath"]
            path = Path(hp.get("path", "/"))
            if hp.get("type") == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif hp.get("type") == "FileOrCreate" and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            elif hp.get("type") and not path.exists():
                raise MountError(f"hostPath type check failed: {path} is not a "
                                 f"{hp['type']}")
            out[name] = str(path)
            continue
        target = base / kind / name
        if kind == "emptyDir":
            fresh = not target.exists()
            target.mkdir(parents=True, exist_ok=True)
            if fresh and (volume["emptyDir"] or {}).get("medium") == "Memory" \
                    and os.geteuid() == 0:
                subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)], check=False,
                               capture_output=True)
            out[name] = str(target)
            continue
        files = volume_files(pod, volume, src, token=token, ca_pem=ca_pem)
        if files is None:
            raise MountError(f"volume {name!r}: unsupported volume type")
        write_atomic(target, files)
        out[name] = str(target)
    return out


def all_volumes(pod: JSON) -> list[JSON]:
    """The pod's volumes plus the service account one kubelet mounts when
    automountServiceAccountToken is not false and no mount covers it."""
    spec = pod.get("spec") or {}
    vols = list(spec.get("volumes") or [])
    if wants_service_account(pod):
        vols.append({"name": SA_VOLUME})
    return vols


def wants_service_account(pod: JSON) -> bool:
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is False:
        return False
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for m in c.get("volumeMounts") or []:
            if m.get("mountPath") == SA_DIR:
                return False
    return True


def teardown_volumes(data_dir: Path, uid: str) -> None:
    """Unmount tmpfs emptyDirs and remove the pod's directory (idempotent)."""
    root = pod_dir(data_dir, uid)
    empty = root / "volumes" / "emptyDir"
    if empty.exists():
        for d in empty.iterdir():
            if os.path.ismount(d):
                subprocess.run(["umount", "-l", str(d)], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def container_mounts(pod: JSON, container: JSON, paths: Mapping[str, str], *,
                     etc_dir: Path | None = None) -> list[Mount]:
    out = []
    for m in container.get("volumeMounts") or []:
        source = paths.get(m.get("name", ""))
        if source is None:
            raise MountError(f"volume {m.get('name')!r} not found")
        sub = m.get("subPath")
        if sub:
            if sub.startswith("/") or ".." in Path(sub).parts:
                raise MountError(f"subPath {sub!r} must be a relative path without '..'")
            sub_path = Path(source) / sub
            if not sub_path.exists():
                sub_path.mkdir(parents=True, exist_ok=True)
            source = str(sub_path)
        out.append(Mount(destination=m["mountPath"], source=source,
                         read_only=bool(m.get("readOnly"))))
    if wants_service_account(pod) and SA_VOLUME in paths:
        out.append(Mount(destination=SA_DIR, source=paths[SA_VOLUME], read_only=True))
    if etc_dir is not None:
        out.append(Mount(destination="/etc/hosts", source=str(etc_dir / "hosts")))
        out.append(Mount(destination="/etc/hostname", source=str(etc_dir / "hostname")))
        if (etc_dir / "resolv.conf").exists():
            out.append(Mount(destination="/etc/resolv.conf", source=str(etc_dir / "resolv.conf")))
    return out


def write_etc(pod: JSON, etc_dir: Path, *, pod_ip: str, resolv_conf: str | None = None) -> None:
    """The pod's /etc/hosts, /etc/hostname and (when given) /etc/resolv.conf,
    as kubelet manages them."""
    spec = pod.get("spec") or {}
    hostname = spec.get("hostname") or (pod.get("metadata") or {}).get("name", "")
    etc_dir.mkdir(parents=True, exist_ok=True)
    hosts = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost",
             "::1\tlocalhost ip6-localhost ip6-loopback"]
    if pod_ip:
        hosts.append(f"{pod_ip}\t{hostname}")
    for alias in spec.get("hostAliases") or []:
        hosts.append(f"{alias.get('ip')}\t{' '.join(alias.get('hostnames') or [])}")
    (etc_dir / "hosts").write_text("\n".join(hosts) + "\n")
    (etc_dir / "hostname").write_text(hostname + "\n")
    if resolv_conf is not None:
        (etc_dir / "resolv.conf").write_text(resolv_conf)
