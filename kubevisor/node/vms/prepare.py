"""Everything a VM needs on this host before it can be defined: its class's
hardware, its image file, a static address per NIC, its boot disk (a qcow2
linked clone of the image in the VM's directory, grown to
spec.advanced.bootDiskCapacity), the kernel of a kernel-boot image, its
PVC volumes and its NoCloud seed; and the plain
:class:`~kubevisor.runtime.qemu.VMSpec` they make. Each step is idempotent
and cheap once done, so the worker runs :func:`prepare` on every sync.

What cannot be had (no class, no image, the image file not on this node, a
PVC not bound, a Secret key missing) is a :class:`PrepareError` with a
reason and a message the user can act on; host failures (qemu-img,
genisoimage, IPAM) are translated into one too. Called by the VM worker.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubevisor.api.quantity import parse_quantity
from kubevisor.api.vmoperator import resolve
from kubevisor.client import ClientError, NotFoundError
from kubevisor.node.vms import cloudinit, names
from kubevisor.node.vms.record import Record
from kubevisor.node.vms.status import NicStatus
from kubevisor.runtime.errors import RuntimeFailure
from kubevisor.runtime.qemu import DirectBoot, Disk, NetworkInterface, Seed, VMSpec, disks, library
from kubevisor.runtime.qemu import seed as seeds

if TYPE_CHECKING:
    from kubevisor.node.vms.manager import VMManager

JSON = dict[str, Any]
API = "vmoperator.vmware.com/v1alpha6"
BOOT_DISK = "disk.qcow2"
SEED = "seed.iso"
#: ``extract(image_path, fmt, dest_dir)``: the kernel of a kernel-boot image, or None.
Extractor = Callable[[str, str, str], Awaitable[DirectBoot | None]]
VIRTIO_SERIAL_MAX = 20


class PrepareError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class Prepared:
    spec: VMSpec
    nics: list[NicStatus]
    seed_docs: tuple[str, str, str | None] | None = None
    volumes: list[JSON] = field(default_factory=list)
    capacity: int = 0  # spec.advanced.bootDiskCapacity in bytes (0: the image's size)
    image_path: str = ""


def _firmware(vm: Mapping[str, Any], image: Mapping[str, Any]) -> str:
    wanted = str(((vm.get("spec") or {}).get("bootOptions") or {}).get("firmware") or "")
    fw = wanted or str((image.get("status") or {}).get("firmware") or "")
    return "uefi" if fw.lower() in ("efi", "uefi") else "bios"


def nic_count(vm: Mapping[str, Any]) -> int:
    net = (vm.get("spec") or {}).get("network") or {}
    if net.get("disabled"):
        return 0
    return len(net.get("interfaces") or ()) or 1


def _nic_names(vm: Mapping[str, Any], count: int) -> list[tuple[str, str]]:
    """(name in spec, guest device name) per NIC."""
    interfaces = ((vm.get("spec") or {}).get("network") or {}).get("interfaces") or []
    out = []
    for i in range(count):
        entry = interfaces[i] if i < len(interfaces) else {}
        out.append((str(entry.get("name") or f"eth{i}"),
                    str(entry.get("guestDeviceName") or f"eth{i}")))
    return out


def _capacity(vm: Mapping[str, Any]) -> int:
    raw = ((vm.get("spec") or {}).get("advanced") or {}).get("bootDiskCapacity")
    if raw in (None, ""):
        return 0
    try:
        return int(parse_quantity(raw))
    except (ValueError, ArithmeticError) as exc:
        raise PrepareError("InvalidBootDiskCapacity",
                           f"spec.advanced.bootDiskCapacity {raw!r} is not a quantity") from exc


async def _image(m: VMManager, vm: Mapping[str, Any]) -> JSON:
    ref = resolve.image_ref(vm)
    ns = (vm.get("metadata") or {}).get("namespace") or ""
    if ref is None:
        raise PrepareError("VirtualMachineImageNotSpecified",
                           "the VM names no image (spec.image or spec.imageName)")
    found = None
    if ref.kind == resolve.VMI:
        found = await m.lookup(resolve.VMI, ref.name, ns)
    if found is None and (ref.kind == resolve.CVMI or not (vm.get("spec") or {}).get("image")):
        found = await m.lookup(resolve.CVMI, ref.name, "")
    if found is None:
        raise PrepareError("VirtualMachineImageNotFound",
                           f"no {ref.kind} {ref.name!r} (nor a ClusterVirtualMachineImage of "
                           "that name)" if ref.kind == resolve.VMI else
                           f"no ClusterVirtualMachineImage {ref.name!r}")
    return found


async def _class(m: VMManager, vm: Mapping[str, Any]) -> resolve.Hardware:
    name = resolve.class_name(vm)
    if not name:
        return resolve.hardware(None)
    ns = (vm.get("metadata") or {}).get("namespace") or ""
    found = await m.lookup("VirtualMachineClass", name, ns)
    if found is None:
        raise PrepareError("VirtualMachineClassNotFound",
                           f"no VirtualMachineClass {name!r} in namespace {ns!r}")
    return resolve.hardware(found)


async def _volumes(m: VMManager, vm: Mapping[str, Any]) -> tuple[list[Disk], list[JSON]]:
    wanted = [v for v in (vm.get("spec") or {}).get("volumes") or ()
              if (v.get("persistentVolumeClaim") or {}).get("claimName")]
    if not wanted:
        return [], []
    try:
        from kubevisor.node import vmvolumes
    except ImportError as exc:
        raise PrepareError("VolumesNotSupported",
                           "this node agent cannot attach PersistentVolumeClaims yet") from exc
    ns = (vm.get("metadata") or {}).get("namespace") or ""
    out_disks, out_status = [], []
    for vol in wanted:
        pvc_ref = vol["persistentVolumeClaim"]
        claim = pvc_ref["claimName"]
        try:
            pvc = await m.client.get("v1", "PersistentVolumeClaim", claim, namespace=ns)
            pv_name = (pvc.get("spec") or {}).get("volumeName")
            if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
                raise PrepareError("VolumeNotBound",
                                   f"PersistentVolumeClaim {claim!r} is not bound yet")
            pv = await m.client.get("v1", "PersistentVolume", pv_name)
        except NotFoundError as exc:
            raise PrepareError("VolumeNotFound",
                               f"no PersistentVolumeClaim {claim!r} (or its volume)") from exc
        try:
            made = vmvolumes.ensure_volume(m.data_dir, pv)
            path = await made if inspect.isawaitable(made) else made
        except (vmvolumes.VolumeError, RuntimeFailure) as exc:
            raise PrepareError("VolumeError", f"volume {vol['name']!r}: {exc}") from exc
        out_disks.append(Disk(path=str(path), format="qcow2",
                              readonly=bool(pvc_ref.get("readOnly")),
                              serial=str(vol["name"])[:VIRTIO_SERIAL_MAX]))
        capacity = ((pv.get("spec") or {}).get("capacity") or {}).get("storage")
        out_status.append({"name": vol["name"], "type": "Managed", "attached": True,
                           **({"limit": capacity} if capacity else {})})
    return out_disks, out_status


async def _secrets(m: VMManager, vm: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    ns = (vm.get("metadata") or {}).get("namespace") or ""
    found: dict[tuple[str, str], str] = {}
    cache: dict[str, JSON | None] = {}
    for name, key in cloudinit.secret_refs(vm):
        if name not in cache:
            try:
                cache[name] = await m.client.get("v1", "Secret", name, namespace=ns)
            except NotFoundError:
                cache[name] = None
        secret = cache[name]
        if secret is None:
            raise PrepareError("BootstrapSecretNotFound",
                               f"no Secret {name!r} in namespace {ns!r} for the VM's bootstrap")
        data = secret.get("data") or {}
        string_data = secret.get("stringData") or {}
        if key in data:
            try:
                found[(name, key)] = base64.b64decode(data[key]).decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise PrepareError("BootstrapSecretInvalid",
                                   f"Secret {name!r} key {key!r} is not base64 text") from exc
        elif key in string_data:
            found[(name, key)] = str(string_data[key])
    return found


async def prepare(m: VMManager, vm: Mapping[str, Any], record: Record) -> Prepared:
    """The VM's host spec; its IPs, disk and kernel are made on the way
    (the seed only when :func:`materialize` runs). PrepareError when it
    cannot be had yet."""
    md = vm.get("metadata") or {}
    uid = str(md["uid"])
    vm_dir = m.driver.root / uid
    hw = await _class(m, vm)
    image = await _image(m, vm)
    digest = resolve.image_digest(image)
    if not digest:
        raise PrepareError("VirtualMachineImageNotReady",
                           f"image {image['metadata']['name']!r} has no content digest "
                           f"(annotation {resolve.DIGEST_ANNOTATION}); import it with "
                           "kubevisor image add")
    try:
        image_path = library.stored_path(m.images_root, digest)
    except RuntimeFailure as exc:
        raise PrepareError("VirtualMachineImageNotReady", str(exc)) from exc
    if not image_path.is_file():
        raise PrepareError("VirtualMachineImageNotOnNode",
                           f"the file of image {image['metadata']['name']!r} ({digest}) is not "
                           f"in the image library of node {m.config.node_name}; run kubevisor "
                           "image add there")
    fmt = resolve.image_format(image) or "qcow2"
    try:
        if not record.boot_checked:
            boot = await m.extract(str(image_path), fmt,
                                   str(m.kernels_dir(digest))) if m.extract else None
            record.boot_checked = True
            record.direct_boot = ({"kernel": boot.kernel, "initrd": boot.initrd,
                                   "append": boot.append} if boot else None)
        count = nic_count(vm)
        ports = [await m.ports.allocate(uid, i) for i in range(count)]
    except RuntimeFailure as exc:
        raise PrepareError("HostError", str(exc)) from exc
    volume_disks, volume_status = await _volumes(m, vm)
    nic_names = _nic_names(vm, count)
    nics = [NicStatus(name=nic_names[i][0], mac=names.mac(uid, i), cidr=ports[i].cidr)
            for i in range(count)]
    interfaces = tuple(NetworkInterface(mac=names.mac(uid, i), tap=names.tap(uid, i),
                                        bridge=ports[i].bridge) for i in range(count))
    bios = str((vm.get("spec") or {}).get("biosUUID") or names.bios_uuid(uid))
    seed = None if cloudinit.disabled(vm) else Seed(str(vm_dir / SEED))
    spec = VMSpec(
        id=uid, cpus=hw.cpus, memory_bytes=hw.memory_bytes, firmware=_firmware(vm, image),  # type: ignore[arg-type]
        disks=(Disk(path=str(vm_dir / BOOT_DISK), format="qcow2", boot=True), *volume_disks),
        seed=seed, interfaces=interfaces, direct_boot=record.boot(), uuid=bios,
        labels={"namespace": str(md.get("namespace") or ""), "name": str(md.get("name") or "")})
    prepared = Prepared(spec=spec, nics=nics, volumes=volume_status, capacity=_capacity(vm),
                        image_path=str(image_path))
    if seed is not None:
        cloud_nics = [cloudinit.Nic(mac=nics[i].mac, name=nic_names[i][1], address=ports[i].cidr,
                                    gateway=ports[i].gateway if i == 0 else "")
                      for i in range(count)]
        net = (vm.get("spec") or {}).get("network") or {}
        dns = [str(s) for s in net.get("nameservers") or ()] or \
            ([m.config.cluster_dns] if m.config.cluster_dns else [])
        prepared.seed_docs = (cloudinit.meta_data(vm), "",
                              cloudinit.network_config(cloud_nics, nameservers=dns)
                              if cloud_nics else None)
    return prepared


def _seed_key(vm: Mapping[str, Any], prepared: Prepared) -> str:
    spec = vm.get("spec") or {}
    inputs = {"bootstrap": spec.get("bootstrap"), "docs": prepared.seed_docs}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


async def materialize(m: VMManager, vm: Mapping[str, Any], prepared: Prepared, record: Record,
                      *, stopped: bool) -> None:
    """Make the boot disk (grown while the VM is stopped) and the seed
    (rewritten when the bootstrap or the addresses changed)."""
    vm_dir = m.driver.root / prepared.spec.id
    boot = vm_dir / BOOT_DISK
    try:
        vm_dir.mkdir(parents=True, exist_ok=True)
        if not boot.exists():
            await disks.linked_clone(prepared.image_path, str(boot),
                                     size=prepared.capacity or None)
            record.extra["capacity"] = prepared.capacity
        elif stopped and prepared.capacity > int(record.extra.get("capacity") or 0):
            await disks.resize(str(boot), prepared.capacity)
            record.extra["capacity"] = prepared.capacity
        if prepared.seed_docs is not None and prepared.spec.seed is not None:
            key = _seed_key(vm, prepared)
            if key != record.seed or not Path(prepared.spec.seed.path).exists():
                meta, _, net = prepared.seed_docs
                try:
                    user = cloudinit.user_data(vm, await _secrets(m, vm))
                except cloudinit.BootstrapError as exc:
                    raise PrepareError("BootstrapError", str(exc)) from exc
                await seeds.write_seed(prepared.spec.seed.path, meta_data=meta, user_data=user,
                                       network_config=net)
                record.seed = key
    except RuntimeFailure as exc:
        raise PrepareError("HostError", str(exc)) from exc
    except OSError as exc:
        raise PrepareError("HostError", f"{vm_dir}: {exc.strerror or exc}") from exc
    except ClientError as exc:
        raise PrepareError("BootstrapError", f"reading the bootstrap Secrets: {exc}") from exc
