"""Small OCI images for tests, built offline with ``umoci`` from Debian's
busybox-static, and cached.

An image is described by a :class:`Recipe` (a list of layer steps plus the
config); :func:`build` turns it into an OCI image layout directory with one
tag and returns a :class:`BuiltImage`. Files get one fixed mtime, so equal
layer steps make byte-identical layers: a :func:`variant` shares its base
layers with the image it varies, as real images do. Results are cached under the repo's
``.cache/test-images/<name>-<key>/`` where ``key`` hashes the recipe, the
busybox binary and the umoci version, so a changed recipe rebuilds and an
unchanged one costs nothing (safe across xdist workers: each build happens in
a temporary directory renamed into place).

Ready-made recipes:

- :func:`busybox_recipe` — ``/bin/busybox`` plus every applet as a symlink
  (``/bin/sh`` …), ``/etc/passwd``/``group``, ``/tmp``; ``Cmd ["sh"]``.
- :func:`httpd_recipe` — busybox plus ``/usr/local/bin/httpd-start``, which
  writes ``/www/index.html`` (``hostname`` and the recipe's ``version``),
  then ``exec httpd -f -p 80 -h /www`` (foreground); port 80/tcp exposed.
  ``httpd_recipe(version="2", tag="v2")`` is the variant for rolling updates.
- :func:`variant` — any recipe with another tag and extra files (a new top
  layer), e.g. to get a different image id.

Layer steps: :class:`Files` (add files), :class:`Whiteout` (delete a path
from the layers below), :class:`Opaque` (replace a directory's contents).

Use with the registry helper (``tests/support/registry.py``)::

    img = build(httpd_recipe())
    push(img, registry, name="httpd")         # 127.0.0.1:PORT/httpd:<img.tag>
    oci_archive(img, tmp_path / "httpd.tar", "httpd:1")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "test-images"
BUSYBOX = Path("/bin/busybox")
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
FIXED_MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class Files:
    """A layer adding files: path → content (str or bytes), mode 0644, or
    (content, mode). ``busybox=True`` also adds /bin/busybox with its applets."""

    files: Mapping[str, str | bytes | tuple[str | bytes, int]] = field(default_factory=dict)
    busybox: bool = False


@dataclass(frozen=True)
class Whiteout:
    """A layer deleting ``path`` (an OCI ``.wh.`` whiteout)."""

    path: str


@dataclass(frozen=True)
class Opaque:
    """A layer replacing directory ``path`` by exactly ``files`` (paths
    relative to it): an OCI opaque whiteout ``.wh..wh..opq``."""

    path: str
    files: Mapping[str, str | bytes] = field(default_factory=dict)


Step = Files | Whiteout | Opaque


@dataclass(frozen=True)
class Recipe:
    name: str
    tag: str
    layers: Sequence[Step]
    cmd: Sequence[str] = ()
    entrypoint: Sequence[str] = ()
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    exposed_ports: Sequence[str] = ()
    working_dir: str = ""

    def key(self) -> str:
        def encode(value: object) -> object:
            if isinstance(value, bytes):
                return {"bytes": value.hex()}
            if isinstance(value, Files | Whiteout | Opaque):
                return {type(value).__name__: encode(dataclasses.asdict(value))}
            if isinstance(value, Mapping):
                return {k: encode(v) for k, v in sorted(value.items())}
            if isinstance(value, list | tuple):
                return [encode(v) for v in value]
            return value

        doc = {
            "recipe": encode({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}),
            "busybox": _file_hash(BUSYBOX),
            "umoci": _umoci_version(),
            "format": 2,  # bump when build() changes what it makes
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BuiltImage:
    """An OCI image layout directory holding ``tag``."""

    layout: Path
    tag: str
    recipe: Recipe

    @property
    def oci_ref(self) -> str:
        """``oci:<layout>:<tag>``, as skopeo names it."""
        return f"oci:{self.layout}:{self.tag}"

    def manifest_digest(self) -> str:
        index = json.loads((self.layout / "index.json").read_text())
        for entry in index["manifests"]:
            if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == self.tag:
                return str(entry["digest"])
        raise KeyError(self.tag)

    def config_digest(self) -> str:
        """The image id a pull of this image reports."""
        hex_ = self.manifest_digest().removeprefix("sha256:")
        manifest = json.loads((self.layout / "blobs" / "sha256" / hex_).read_text())
        return str(manifest["config"]["digest"])


@cache
def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@cache
def _umoci_version() -> str:
    return subprocess.run([UMOCI, "--version"], check=True, capture_output=True, text=True).stdout.strip()


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")


def _write_files(root: Path, files: Mapping[str, str | bytes | tuple[str | bytes, int]]) -> None:
    for rel, spec in files.items():
        content, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(mode)


def _busybox_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run([str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True)
    for rel in applets.stdout.split():
        link = root / rel
        if rel == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    for rel, mode in (("tmp", 0o1777), ("root", 0o700), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755)):
        (root / rel).mkdir(exist_ok=True)
        (root / rel).chmod(mode)
    _write_files(root, {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        "etc/group": "root:x:0:\nnogroup:x:65534:\n",
        "etc/hostname": "busybox\n",
    })  # fmt: skip


def _fix_times(root: Path) -> None:
    """One fixed mtime for every path, so equal layer recipes give equal
    layers (and images built from one base share its layer)."""
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(Path(current) / name, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def _build_into(recipe: Recipe, layout: Path, work: Path) -> None:
    image = f"{layout}:{recipe.tag}"
    _run(UMOCI, "init", "--layout", str(layout))
    _run(UMOCI, "new", "--image", image)
    for n, step in enumerate(recipe.layers):
        src = work / f"layer{n}"
        src.mkdir(mode=0o755)
        if isinstance(step, Files):
            if step.busybox:
                _busybox_tree(src)
            _write_files(src, step.files)
            _fix_times(src)
            _run(UMOCI, "insert", "--image", image, str(src), "/")
        elif isinstance(step, Whiteout):
            _run(UMOCI, "insert", "--image", image, "--whiteout", step.path)
        else:
            _write_files(src, step.files)
            _fix_times(src)
            _run(UMOCI, "insert", "--image", image, "--opaque", str(src), step.path)
    config: list[str] = []
    for value in recipe.env:
        config += ["--config.env", value]
    for value in recipe.cmd:
        config += ["--config.cmd", value]
    for value in recipe.entrypoint:
        config += ["--config.entrypoint", value]
    for value in recipe.exposed_ports:
        config += ["--config.exposedports", value]
    if recipe.working_dir:
        config += ["--config.workingdir", recipe.working_dir]
    _run(UMOCI, "config", "--image", image, "--os", "linux", "--architecture", "amd64", *config)
    _run(UMOCI, "gc", "--layout", str(layout))


def build(recipe: Recipe) -> BuiltImage:
    """The image of ``recipe``, from the cache or built now (needs root:
    umoci keeps the files' owners)."""
    final = CACHE_DIR / f"{recipe.name}-{recipe.key()}"
    if not (final / "index.json").exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=".build-") as tmp:
            layout = Path(tmp) / "layout"
            work = Path(tmp) / "work"
            work.mkdir()
            _build_into(recipe, layout, work)
            staged = CACHE_DIR / f".{final.name}-{uuid.uuid4().hex[:8]}"
            layout.rename(staged)
            try:
                staged.rename(final)
            except OSError:  # another worker finished first
                shutil.rmtree(staged, ignore_errors=True)
    return BuiltImage(layout=final, tag=recipe.tag, recipe=recipe)


# ------------------------------------------------------------------ recipes


def busybox_recipe(tag: str = "1") -> Recipe:
    return Recipe(name="busybox", tag=tag, layers=[Files(busybox=True)], cmd=["sh"])


HTTPD_START = """#!/bin/sh
# Written by tests/support/images.py: the page names the pod that served it.
mkdir -p /www
cat > /www/index.html <<EOF
<html><body><h1>$(hostname)</h1><p>version {version}</p></body></html>
EOF
echo "httpd-start: serving /www as $(hostname) on port 80"
exec httpd -f -v -p 80 -h /www
"""


def httpd_recipe(version: str = "1", *, tag: str | None = None) -> Recipe:
    start = HTTPD_START.replace("{version}", version)
    return Recipe(
        name="httpd",
        tag=tag or version,
        layers=[Files(busybox=True), Files({"usr/local/bin/httpd-start": (start, 0o755)})],
        cmd=["/usr/local/bin/httpd-start"],
        exposed_ports=["80/tcp"],
    )


def variant(recipe: Recipe, tag: str, files: Mapping[str, str | bytes] | None = None) -> Recipe:
    """``recipe`` with another tag and, by default, a top layer holding
    ``/etc/variant`` (the tag), so its image id differs."""
    extra = Files(dict(files) if files is not None else {"etc/variant": f"{tag}\n"})
    return dataclasses.replace(recipe, tag=tag, layers=[*recipe.layers, extra])


def oci_archive(image: BuiltImage, dest: Path, name: str) -> Path:
    """An ``oci-archive`` tar of ``image`` whose index names it ``name``
    (``busybox:1``), as ``skopeo copy ... oci-archive:FILE:name`` writes it."""
    _run(SKOPEO, "copy", "--quiet", image.oci_ref, f"oci-archive:{dest}:{name}")
    return dest
