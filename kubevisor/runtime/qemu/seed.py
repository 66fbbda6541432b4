"""The NoCloud seed a VM's cloud-init reads: a small ISO9660 (or vfat)
volume labelled ``cidata`` holding ``meta-data``, ``user-data`` and
optionally ``network-config`` (v2). Standard NoCloud, so Debian's real
cloud-init and the test guest's busybox reader consume the same seed.
Built without root: ``genisoimage`` (Debian package genisoimage) for ISO,
``mkfs.vfat`` + ``mcopy`` (dosfstools, mtools) for vfat.

The renderers write plain block YAML (multi-line strings as ``|``
blocks, no line folding), the subset the test guest's parser reads.
Called by the node agent when it prepares a VM.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

from kubevisor.runtime.qemu.errors import SeedError

SeedFormat = Literal["iso", "vfat"]
LABEL = "cidata"


class _BlockDumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_BlockDumper.add_representer(str, _str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, default_flow_style=False, sort_keys=False,
                     width=1 << 20, allow_unicode=True)


def render_meta_data(*, instance_id: str, hostname: str) -> str:
    return dump({"instance-id": instance_id, "local-hostname": hostname})


def render_user_data(cloud_config: Mapping[str, Any]) -> str:
    """``#cloud-config`` user-data from a dict (users, ssh keys, runcmd, write_files...)."""
    return "#cloud-config\n" + dump(dict(cloud_config))


def render_network_config(interfaces: Sequence[Mapping[str, Any]]) -> str:
    """network-config v2: one ethernet per item ``{"mac", "name", "addresses"
    (CIDRs; empty means DHCP), "gateway", "nameservers"}``, matched by MAC."""
    ethernets: dict[str, Any] = {}
    for n, nic in enumerate(interfaces):
        entry: dict[str, Any] = {"match": {"macaddress": nic["mac"]}, "set-name": nic.get("name") or f"eth{n}"}
        if nic.get("addresses"):
            entry["addresses"] = list(nic["addresses"])
            if nic.get("gateway"):
                entry["routes"] = [{"to": "default", "via": nic["gateway"]}]
        else:
            entry["dhcp4"] = True
        if nic.get("nameservers"):
            entry["nameservers"] = {"addresses": list(nic["nameservers"])}
        ethernets[f"nic{n}"] = entry
    return dump({"version": 2, "ethernets": ethernets})


async def _run(*argv: str) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        raise SeedError(f"{argv[0]}: {exc}") from exc
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SeedError(f"{argv[0]}: {out.decode(errors='replace').strip()}")


async def write_seed(path: str, *, meta_data: str, user_data: str, network_config: str | None = None,
                     fmt: SeedFormat = "iso") -> str:
    """Write the seed volume to ``path`` (replaced atomically); returns ``path``."""
    files = {"meta-data": meta_data, "user-data": user_data}
    if network_config is not None:
        files["network-config"] = network_config
    tmp = f"{path}.tmp"
    with tempfile.TemporaryDirectory(prefix="kubevisor-seed-") as src:
        for name, text in files.items():
            with open(os.path.join(src, name), "w") as out:
                out.write(text)
        names = [os.path.join(src, name) for name in files]
        try:
            if fmt == "iso":
                tool = shutil.which("genisoimage") or shutil.which("mkisofs")
                if tool is None:
                    raise SeedError("genisoimage is not installed (Debian package genisoimage)")
                await _run(tool, "-quiet", "-output", tmp, "-volid", LABEL, "-joliet", "-rock", *names)
            else:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                await _run("mkfs.vfat", "-n", LABEL.upper(), "-C", tmp, "2048")
                await _run("mcopy", "-oi", tmp, *names, "::")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return path
