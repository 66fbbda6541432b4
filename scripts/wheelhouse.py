"""Keep a wheel of every distribution installed in this virtualenv.

`make deps` runs this after a successful install, so the machine keeps the
exact pinned wheels in a wheelhouse outside the clone (default
/var/cache/kubevisor/wheels). When the package index cannot be reached later,
a fresh clone on the same machine (CI's among them) installs from there.

A wheel is rebuilt from what the installation recorded (its dist-info RECORD):
the files under site-packages and the programs it put in bin/ (as .data/scripts),
with a new RECORD of their hashes. Console scripts of entry points are left
out: pip writes them again from entry_points.txt.

Usage: python scripts/wheelhouse.py DIR
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path


def _tags(dist: metadata.Distribution) -> str:
    """The compressed tag set of a wheel (py3-none-any, cp311-cp311-manylinux…)."""
    pythons: list[str] = []
    abis: list[str] = []
    platforms: list[str] = []
    for line in (dist.read_text("WHEEL") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Tag":
            python, abi, platform = value.strip().split("-")
            for part, seen in ((python, pythons), (abi, abis), (platform, platforms)):
                if part not in seen:
                    seen.append(part)
    if not pythons:
        raise ValueError(f"{dist.metadata['Name']}: WHEEL names no tag")
    return "-".join(".".join(p) for p in (pythons, abis, platforms))


def _record_line(name: str, data: bytes) -> list[str]:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [name, f"sha256={digest}", str(len(data))]


def pack(dist: metadata.Distribution, site: Path, dest: Path) -> Path | None:
    """Write `dist` as a wheel into `dest`; None when it was installed editable."""
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        return None
    name = dist.metadata["Name"].replace("-", "_").replace(".", "_")
    wheel = dest / f"{name}-{dist.version}-{_tags(dist)}.whl"
    if wheel.exists():
        return wheel
    scripts_dir = Path(sysconfig.get_paths()["scripts"]).resolve()
    entry_scripts = {ep.name for ep in dist.entry_points if ep.group.endswith("_scripts")}
    data_scripts = f"{name}-{dist.version}.data/scripts/"
    record_name = None
    rows: list[list[str]] = []
    partial = wheel.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in dist.files or ():
            path = (site / file).resolve()
            if "__pycache__" in file.parts:
                continue
            if path.parent == scripts_dir:
                # a program shipped as data (ruff's binary); entry points are rewritten by pip
                if path.name in entry_scripts:
                    continue
                arcname = data_scripts + path.name
            elif path.is_relative_to(site):
                arcname = path.relative_to(site).as_posix()
            else:
                continue
            if arcname.endswith(".dist-info/RECORD"):
                record_name = arcname
                continue
            if arcname.endswith((".dist-info/INSTALLER", ".dist-info/REQUESTED")):
                continue
            if arcname.endswith(".dist-info/direct_url.json"):
                continue
            data = path.read_bytes()
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (path.stat().st_mode & 0xFFFF) << 16  # keeps ruff executable
            zf.writestr(info, data)
            rows.append(_record_line(arcname, data))
        if record_name is None:
            raise ValueError(f"{dist.metadata['Name']}: no RECORD")
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([*rows, [record_name, "", ""]])
        zf.writestr(record_name, out.getvalue())
    partial.rename(wheel)
    return wheel


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    dest = Path(argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    packed = 0
    for dist in metadata.distributions(path=[str(site)]):
        if pack(dist, site, dest) is not None:
            packed += 1
    print(f"wheelhouse {dest}: {packed} distributions kept")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
