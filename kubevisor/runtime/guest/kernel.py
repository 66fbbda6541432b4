"""Debian's kernel for the test guest, taken from the ``linux-image-amd64``
package without installing it on the host: ``apt-get download`` into the
cache (once per machine: the .deb is also kept in :data:`MACHINE_DEBS`, and
apt's own archive is looked at first, so a fresh clone builds its guest
without the network), the parts needed unpacked (``dpkg-deb --fsys-tarfile``) into a
versioned directory. Kernel modules are
found by name and their dependencies read from each module's
``.modinfo`` section (the .deb ships no ``modules.dep``).

Called by :mod:`~kubevisor.runtime.guest.image`. Failures (no apt, no
package) raise :class:`~kubevisor.runtime.qemu.errors.GuestImageError`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from kubevisor.runtime.qemu.errors import GuestImageError

META_PACKAGE = "linux-image-amd64"

#: Machine-wide .deb caches looked in before downloading: kubevisor's own
#: (``KUBEVISOR_DEB_CACHE``), which keeps every .deb downloaded, and apt's.
MACHINE_DEBS = Path(os.environ.get("KUBEVISOR_DEB_CACHE", "/var/cache/kubevisor/debs"))
APT_ARCHIVES = Path("/var/cache/apt/archives")


@dataclass(frozen=True, slots=True)
class KernelTree:
    """An extracted kernel package: ``vmlinuz`` and ``modules/<version>/``."""

    version: str
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.version}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.version


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GuestImageError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise GuestImageError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _newest(package: str, *dirs: Path) -> Path | None:
    for folder in dirs:
        found = sorted(folder.glob(f"{package}_*.deb"))
        if found:
            return found[-1]
    return None


def _keep(deb: Path, folder: Path) -> Path:
    """A copy of ``deb`` in ``folder``, appearing whole (written aside, renamed)."""
    partial = folder / f".{deb.name}.partial"
    shutil.copyfile(deb, partial)
    return partial.rename(folder / deb.name)


def _download(package: str, debs: Path) -> Path:
    """The cached .deb of ``package`` (newest if several): from ``debs``, else
    copied from a machine cache, else downloaded (and kept for the machine)."""
    found = _newest(package, debs)
    if found is not None:
        return found
    found = _newest(package, MACHINE_DEBS, APT_ARCHIVES)
    if found is not None:
        return _keep(found, debs)
    if shutil.which("apt-get") is None:
        raise GuestImageError(f"{package}: not cached in {debs} and apt-get is missing")
    _run(["apt-get", "download", package], cwd=debs)
    found = _newest(package, debs)
    if found is None:
        raise GuestImageError(f"apt-get download {package} left no .deb in {debs}")
    try:
        MACHINE_DEBS.mkdir(parents=True, exist_ok=True)
        _keep(found, MACHINE_DEBS)
    except OSError:
        pass  # only a cache: a later clone downloads again
    return found


def fetch_kernel(cache_dir: Path) -> KernelTree:
    """Download (once) and extract (once) Debian's current amd64 kernel."""
    debs = cache_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    meta = _download(META_PACKAGE, debs)
    depends = _run(["dpkg-deb", "-f", str(meta), "Depends"])
    match = re.search(r"linux-image-([0-9][^\s,(]*-amd64)", depends)
    if match is None:
        raise GuestImageError(f"{meta.name}: no kernel in Depends: {depends.strip()!r}")
    version = match.group(1)
    root = cache_dir / f"kernel-{version}"
    if not (root / "boot" / f"vmlinuz-{version}").exists():
        deb = _download(f"linux-image-{version}", debs)
        partial = cache_dir / f".kernel-{version}.{os.getpid()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _extract(deb, partial)
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    return KernelTree(version=version, root=root)


#: The parts of the kernel tree the test guest's modules come from (the
#: whole package unpacks to ~400 MB; these to a few tens).
KEEP = ("boot/", "drivers/virtio/", "drivers/block/", "drivers/net/", "drivers/char/",
        "drivers/cdrom/", "drivers/acpi/", "drivers/input/", "fs/isofs/", "fs/fat/", "fs/nls/",
        "net/core/", "lib/")


def _wanted(name: str) -> bool:
    name = name.removeprefix("./")
    if name.startswith("boot/"):
        return True
    if not name.startswith("lib/modules/"):
        return False
    rest = name.split("/", 3)[3] if name.count("/") >= 3 else ""
    if not rest.startswith("kernel/"):
        return rest.startswith("modules.builtin") or rest == ""
    rest = rest.removeprefix("kernel/")
    if rest.startswith(("drivers/net/wireless/", "drivers/net/ethernet/")):
        return False
    return rest == "" or any(rest.startswith(keep) or keep.startswith(rest + "/") for keep in KEEP)


def _extract(deb: Path, dest: Path) -> None:
    """Unpack the parts of the kernel package the guest needs into ``dest``."""
    try:
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    except OSError as exc:
        raise GuestImageError(f"dpkg-deb: {exc}") from exc
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if _wanted(member.name) and (member.isfile() or member.isdir()):
                    tar.extract(member, dest, filter="data")
    except tarfile.TarError as exc:
        raise GuestImageError(f"unpacking {deb.name}: {exc}") from exc
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise GuestImageError(f"dpkg-deb --fsys-tarfile {deb.name} exited {proc.returncode}")


def _modinfo(path: Path, key: str) -> str:
    data = path.read_bytes()
    match = re.search(rb"\0" + key.encode() + rb"=([^\0]*)\0", data)
    return match.group(1).decode() if match else ""


def module_closure(tree: KernelTree, names: list[str]) -> list[Path]:
    """The .ko files for ``names`` and everything they depend on, in an
    order ``insmod`` accepts (dependencies first). Names built into the
    kernel (``modules.builtin``) are skipped; unknown names raise."""
    index = {ko.name.removesuffix(".ko").replace("-", "_"): ko
             for ko in tree.modules_dir.rglob("*.ko")}
    builtin_file = tree.modules_dir / "modules.builtin"
    builtin = {Path(line).name.removesuffix(".ko").replace("-", "_")
               for line in builtin_file.read_text().split()} if builtin_file.exists() else set()
    ordered: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in index:
            raise GuestImageError(f"kernel {tree.version} has no module {name}")
        for dep in filter(None, _modinfo(index[name], "depends").split(",")):
            visit(dep)
        ordered.append(index[name])

    for name in names:
        visit(name)
    return ordered
