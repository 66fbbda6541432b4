"""A container's environment, command and user, built the Kubernetes way (pure).

:func:`container_env` merges, in kubelet's order, service links
(``FOO_SERVICE_HOST`` ...), ``envFrom``, then ``env`` (``value`` with
``$(VAR)`` expansion, ``valueFrom`` fieldRef / resourceFieldRef /
configMapKeyRef / secretKeyRef); a missing, non-optional ConfigMap or
Secret raises :class:`ConfigError` with kubelet's message (the container
then waits in CreateContainerConfigError). :func:`command` merges
command/args with the image's entrypoint/cmd. The pod worker prefetches
the referenced ConfigMaps, Secrets and Services (:func:`references`) so
these stay pure.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubevisor.api.quantity import parse_quantity
from kubevisor.runtime.types import ImageConfig, Resources

JSON = dict[str, Any]
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """A container cannot be configured (kubelet's CreateContainerConfigError)."""


@dataclass(frozen=True, slots=True)
class Sources:
    """The objects a pod's env and volumes refer to, prefetched by the worker
    (absent key: the object does not exist)."""

    configmaps: Mapping[str, JSON] = field(default_factory=dict)
    secrets: Mapping[str, JSON] = field(default_factory=dict)
    services: Sequence[JSON] = ()  # Services of the pod's namespace
    master_services: Sequence[JSON] = ()  # "kubernetes" in default
    pod_ip: str = ""
    host_ip: str = ""


def references(pod: JSON) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) the pod's env, envFrom and volumes use."""
    cms: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                cms.add(vf["configMapKeyRef"].get("name", ""))
            if "secretKeyRef" in vf:
                secrets.add(vf["secretKeyRef"].get("name", ""))
        for ef in c.get("envFrom") or []:
            if "configMapRef" in ef:
                cms.add(ef["configMapRef"].get("name", ""))
            if "secretRef" in ef:
                secrets.add(ef["secretRef"].get("name", ""))
    for v in spec.get("volumes") or []:
        if "configMap" in v:
            cms.add(v["configMap"].get("name", ""))
        if "secret" in v:
            secrets.add(v["secret"].get("secretName", ""))
        for src in (v.get("projected") or {}).get("sources") or []:
            if "configMap" in src:
                cms.add(src["configMap"].get("name", ""))
            if "secret" in src:
                secrets.add(src["secret"].get("name", ""))
    return cms, secrets


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names replaced, ``$$`` → ``$``,
    unknown references left as written."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR.sub(sub, text)


def service_env(services: Sequence[JSON]) -> dict[str, str]:
    """The docker-link style variables kubelet gives for each Service."""
    out: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        base = (svc.get("metadata") or {}).get("name", "").upper().replace("-", "_")
        ports = spec.get("ports") or []
        out[f"{base}_SERVICE_HOST"] = ip
        if ports:
            out[f"{base}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            proto = str(p.get("protocol") or "TCP")
            port = str(p.get("port"))
            if p.get("name"):
                out[f"{base}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = port
            prefix = f"{base}_PORT_{port}_{proto}"
            out[prefix] = f"{proto.lower()}://{ip}:{port}"
            out[f"{prefix}_PROTO"] = proto.lower()
            out[f"{prefix}_PORT"] = port
            out[f"{prefix}_ADDR"] = ip
        if ports:
            first = ports[0]
            out[f"{base}_PORT"] = (f"{str(first.get('protocol') or 'TCP').lower()}://"
                                   f"{ip}:{first.get('port')}")
    return out


_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: JSON, path: str, src: Sources) -> str:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    m = _FIELD.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": src.pod_ip, "status.podIPs": src.pod_ip,
        "status.hostIP": src.host_ip, "status.hostIPs": src.host_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    if path == "metadata.labels":
        return format_map(md.get("labels") or {})
    if path == "metadata.annotations":
        return format_map(md.get("annotations") or {})
    raise ConfigError(f"unsupported fieldRef path {path!r}")


def format_map(values: Mapping[str, str]) -> str:
    """labels/annotations as a downward API file shows them."""
    return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))


def resource_value(container: JSON, ref: JSON, *, allocatable: Mapping[str, str]) -> str:
    res = container.get("resources") or {}
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    value = (res.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(name)
    if value is None:
        value = allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = parse_quantity("1")
    return str(math.ceil(parse_quantity(value) / divisor))


def _data(obj: JSON) -> dict[str, str]:
    out = {k: str(v) for k, v in (obj.get("data") or {}).items()}
    if obj.get("kind") == "Secret":
        out = {k: base64.b64decode(v).decode(errors="replace") for k, v in out.items()}
    return out


def container_env(pod: JSON, container: JSON, src: Sources, *,
                  image: ImageConfig | None = None,
                  allocatable: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container's environment, image defaults first."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    spec = pod.get("spec") or {}
    env: dict[str, str] = {}
    for kv in (image.env if image else ()):
        k, _, v = kv.partition("=")
        env[k] = v
    links = service_env(src.master_services)
    if spec.get("enableServiceLinks", True):
        links = {**service_env(src.services), **links}
    env.update(links)
    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        if "configMapRef" in ef:
            ref = ef["configMapRef"]
            cm = src.configmaps.get(ref.get("name", ""))
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name")}" not found')
            env.update({prefix + k: v for k, v in _data(cm).items()})
        if "secretRef" in ef:
            ref = ef["secretRef"]
            secret = src.secrets.get(ref.get("name", ""))
            if secret is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name")}" not found')
            env.update({prefix + k: v for k, v in _data(secret).items()})
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            env[name] = expand(str(e.get("value", "")), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""), src)
        elif "resourceFieldRef" in vf:
            target = container
            cname = vf["resourceFieldRef"].get("containerName")
            if cname:
                target = next((c for c in spec.get("containers") or []
                               if c.get("name") == cname), container)
            env[name] = resource_value(target, vf["resourceFieldRef"],
                                       allocatable=allocatable or {})
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            is_cm = "configMapKeyRef" in vf
            ref = vf["configMapKeyRef" if is_cm else "secretKeyRef"]
            obj = (src.configmaps if is_cm else src.secrets).get(ref.get("name", ""))
            what = "configmap" if is_cm else "secret"
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{what} "{ref.get("name")}" not found')
            data = _data(obj)
            if ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                kind = "ConfigMap" if is_cm else "Secret"
                raise ConfigError(f"couldn't find key {ref.get('key')} in {kind} "
                                  f"{ns}/{ref.get('name')}")
            env[name] = data[ref["key"]]
    return env


def command(container: JSON, image: ImageConfig, env: Mapping[str, str]) -> list[str]:
    """Kubernetes' rules for command/args against the image's entrypoint/cmd."""
    cmd = container.get("command")
    args = container.get("args")
    if cmd:
        argv = [*cmd, *(args or [])]
    elif args:
        argv = [*image.entrypoint, *args]
    else:
        argv = [*image.entrypoint, *image.cmd]
    out = [expand(str(a), env) for a in argv]
    if not out:
        raise ConfigError("no command specified")
    return out


def resources(container: JSON) -> Resources:
    res = container.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}

    def millis(v: Any) -> int | None:
        return None if v is None else math.ceil(parse_quantity(v) * 1000)

    def bytes_(v: Any) -> int | None:
        return None if v is None else int(parse_quantity(v))

    return Resources(cpu_request_millis=millis(req.get("cpu", lim.get("cpu"))),
                     cpu_limit_millis=millis(lim.get("cpu")),
                     memory_limit_bytes=bytes_(lim.get("memory")))


def parse_passwd(text: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            out[parts[0]] = (int(parts[2]), int(parts[3]))
    return out


def parse_group(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            out[parts[0]] = int(parts[2])
    return out


def user(pod: JSON, container: JSON, image: ImageConfig, *, passwd: str = "",
         group: str = "") -> tuple[int, int]:
    """(uid, gid): securityContext (container over pod), else the image's
    USER (numeric or a name from the rootfs's /etc/passwd), else root."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    img_uid, img_gid = 0, 0
    if image.user:
        name, _, grp = image.user.partition(":")
        users = parse_passwd(passwd)
        if name.isdigit():
            img_uid = int(name)
            img_gid = next((g for u, g in users.values() if u == img_uid), 0)
        elif name in users:
            img_uid, img_gid = users[name]
        else:
            raise ConfigError(f"unable to find user {name}: no matching entries in passwd file")
        if grp:
            groups = parse_group(group)
            if grp.isdigit():
                img_gid = int(grp)
            elif grp in groups:
                img_gid = groups[grp]
            else:
                raise ConfigError(f"unable to find group {grp}: no matching entries in group file")
    if uid is None:
        uid = img_uid
        if gid is None:
            gid = img_gid
    elif gid is None:
        gid = next((g for u, g in parse_passwd(passwd).values() if u == uid), 0)
    return int(uid), int(gid)


def check_non_root(pod: JSON, container: JSON, uid: int) -> None:
    """kubelet's runAsNonRoot check (container setting over the pod's)."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
        md = pod.get("metadata") or {}
        raise ConfigError(
            f'container has runAsNonRoot and image will run as root (pod: '
            f'"{md.get("name")}_{md.get("namespace")}({md.get("uid")})", '
            f'container: {container.get("name")})')
