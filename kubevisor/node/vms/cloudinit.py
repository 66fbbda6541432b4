"""The NoCloud seed's three documents for one VirtualMachine (pure).

- meta-data: ``instance-id`` (spec.bootstrap.cloudInit.instanceID, else the
  VM's uid) and ``local-hostname`` (spec.network.hostName, else the VM's name);
- user-data: spec.bootstrap.cloudInit.cloudConfig rendered as
  ``#cloud-config`` (users, ssh keys, runcmd, write_files, timezone,
  ssh_pwauth; Secret references resolved), or the value of the Secret key
  named by rawCloudConfig (key ``user-data`` by default); sshAuthorizedKeys
  go into ``ssh_authorized_keys`` (merged into a raw cloud-config, ignored for
  a raw script, which cloud-init runs as it is);
- network-config v2: one ethernet per NIC, matched by MAC, with its static
  address, the default route via the node bridge on the first NIC, and the
  nameservers.

Secret values are handed in by the caller (:func:`secret_refs` says which
to read), so nothing here does I/O. Called by the VM worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from kubevisor.runtime.qemu import seed as seeds

JSON = dict[str, Any]
SecretRef = tuple[str, str]  # (secret name, key)
RAW_DEFAULT_KEY = "user-data"


class BootstrapError(Exception):
    """The VM's bootstrap cannot be rendered (a missing Secret key, bad YAML)."""


@dataclass(frozen=True, slots=True)
class Nic:
    """One NIC as the guest is told about it."""

    mac: str
    name: str
    address: str  # CIDR
    gateway: str = ""


def _cloud_init(vm: Mapping[str, Any]) -> JSON:
    bootstrap = (vm.get("spec") or {}).get("bootstrap") or {}
    return bootstrap.get("cloudInit") or {}


def disabled(vm: Mapping[str, Any]) -> bool:
    """spec.bootstrap.disabled: no seed at all."""
    return bool(((vm.get("spec") or {}).get("bootstrap") or {}).get("disabled"))


def hostname(vm: Mapping[str, Any]) -> str:
    net = (vm.get("spec") or {}).get("network") or {}
    return str(net.get("hostName") or (vm.get("metadata") or {}).get("name") or "")


def _is_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("name"), str) and "key" in value


def secret_refs(vm: Mapping[str, Any]) -> list[SecretRef]:
    """The Secret keys the user-data of ``vm`` needs, in a stable order."""
    ci = _cloud_init(vm)
    refs: list[SecretRef] = []
    raw = ci.get("rawCloudConfig")
    if isinstance(raw, Mapping) and raw.get("name"):
        refs.append((str(raw["name"]), str(raw.get("key") or RAW_DEFAULT_KEY)))
        return refs
    config = ci.get("cloudConfig") or {}
    for user in config.get("users") or ():
        for field in ("passwd", "hashed_passwd"):
            if _is_ref(user.get(field)):
                refs.append((user[field]["name"], user[field]["key"]))
    for wf in config.get("write_files") or ():
        if _is_ref(wf.get("content")):
            refs.append((wf["content"]["name"], wf["content"]["key"]))
    return refs


def meta_data(vm: Mapping[str, Any]) -> str:
    md = vm.get("metadata") or {}
    instance = _cloud_init(vm).get("instanceID") or md.get("uid") or ""
    return seeds.render_meta_data(instance_id=str(instance), hostname=hostname(vm))


def _value(value: Any, secrets: Mapping[SecretRef, str]) -> Any:
    if _is_ref(value):
        ref = (value["name"], value["key"])
        if ref not in secrets:
            raise BootstrapError(f"Secret {ref[0]!r} has no key {ref[1]!r}")
        return secrets[ref]
    return value


def _users(users: Sequence[Mapping[str, Any]], secrets: Mapping[SecretRef, str]) -> list[JSON]:
    out = []
    for user in users:
        entry: JSON = {}
        for key, value in user.items():
            entry[key] = _value(value, secrets)
        out.append(entry)
    return out


def _write_files(files: Sequence[Mapping[str, Any]],
                 secrets: Mapping[SecretRef, str]) -> list[JSON]:
    out = []
    for wf in files:
        entry = {k: v for k, v in wf.items() if v is not None}
        if "content" in entry:
            entry["content"] = _value(entry["content"], secrets)
        out.append(entry)
    return out


def cloud_config(vm: Mapping[str, Any], secrets: Mapping[SecretRef, str]) -> JSON:
    """The cloud-config dict from spec.bootstrap.cloudInit.cloudConfig."""
    ci = _cloud_init(vm)
    config = ci.get("cloudConfig") or {}
    out: JSON = {}
    if config.get("users"):
        out["users"] = (["default"] if config.get("defaultUserEnabled") else []) + \
            _users(config["users"], secrets)
    for key in ("timezone", "ssh_pwauth"):
        if config.get(key) is not None:
            out[key] = config[key]
    if config.get("write_files"):
        out["write_files"] = _write_files(config["write_files"], secrets)
    if config.get("runcmd"):
        out["runcmd"] = list(config["runcmd"])
    keys = [str(k) for k in ci.get("sshAuthorizedKeys") or ()]
    if keys:
        out["ssh_authorized_keys"] = keys
    return out


def user_data(vm: Mapping[str, Any], secrets: Mapping[SecretRef, str]) -> str:
    """The user-data document of ``vm`` (BootstrapError if it cannot be made)."""
    ci = _cloud_init(vm)
    raw = ci.get("rawCloudConfig")
    if isinstance(raw, Mapping) and raw.get("name"):
        ref = (str(raw["name"]), str(raw.get("key") or RAW_DEFAULT_KEY))
        if ref not in secrets:
            raise BootstrapError(f"Secret {ref[0]!r} has no key {ref[1]!r} "
                                 "(spec.bootstrap.cloudInit.rawCloudConfig)")
        text = secrets[ref]
        keys = [str(k) for k in ci.get("sshAuthorizedKeys") or ()]
        if keys and text.lstrip().startswith("#cloud-config"):
            try:
                doc = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise BootstrapError(f"rawCloudConfig Secret {ref[0]!r} key {ref[1]!r} is not "
                                     f"valid YAML: {exc}") from exc
            if not isinstance(doc, dict):
                raise BootstrapError(f"rawCloudConfig Secret {ref[0]!r}: not a mapping")
            doc["ssh_authorized_keys"] = [*(doc.get("ssh_authorized_keys") or ()),
                                          *(k for k in keys
                                            if k not in (doc.get("ssh_authorized_keys") or ()))]
            return seeds.render_user_data(doc)
        return text
    return seeds.render_user_data(cloud_config(vm, secrets))


def network_config(nics: Sequence[Nic], *, nameservers: Sequence[str] = ()) -> str:
    """network-config v2 for ``nics`` (static addresses, gateway on the NICs that have one)."""
    return seeds.render_network_config([
        {"mac": nic.mac, "name": nic.name, "addresses": [nic.address],
         "gateway": nic.gateway, "nameservers": list(nameservers)} for nic in nics])
