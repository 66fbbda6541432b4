"""Container root filesystems: an overlay of shared layers, or a copy.

:func:`prepare` makes, under a per-container directory ``dest``::

    dest/rootfs   the container's root (returned)
    dest/upper    its writes (overlay upper dir)
    dest/work     overlayfs's work dir

by mounting overlayfs with the image's layer directories as ``lowerdir``
(topmost first), so layers are shared read-only by every container of every
image that has them. When overlayfs cannot be used (no kernel support, no
privilege, a lowerdir list longer than a page, paths with ``:`` or ``,``)
the layers are copied into ``dest/rootfs`` with their whiteouts applied.

Both calls are idempotent: preparing a prepared ``dest`` returns it (and
re-mounts an overlay lost to a host reboot over the same upper dir);
:func:`release` unmounts (lazily if busy) and removes ``dest`` and succeeds
when it is already gone. A prepare that fails leaves nothing mounted and
removes what it created. Called by the store for the node agent.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from kubevisor.runtime.errors import ImageError
from kubevisor.runtime.images.layers import OPAQUE_XATTR

_MNT_DETACH = 2
_PAGE = 4096
_COPY_MARKER = ".kubevisor-copied"
_libc = ctypes.CDLL(None, use_errno=True)


def _decode_mountinfo_path(raw: str) -> str:
    """Mount points in /proc/self/mountinfo escape space, tab, newline, backslash as \\ooo."""
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 3 < len(raw) and raw[i + 1 : i + 4].isdigit():
            out.append(chr(int(raw[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def mount_points() -> set[str]:
    """Every mount point visible to this process."""
    with open("/proc/self/mountinfo") as info:
        return {_decode_mountinfo_path(line.split(" ")[4]) for line in info}


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point. The rootfs mounts are overlays,
    whose device differs from their parent's, so a stat of the two answers
    without reading the whole mount table (which made every pod start
    O(pods) on a busy node)."""
    return os.path.ismount(path)


def _mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """mount(2) overlayfs; raises OSError (the kernel's refusal) or ValueError
    (options this module will not pass to the kernel)."""
    paths = [*lowers, upper, work]
    if any(c in str(p) for p in paths for c in ":,"):
        raise ValueError("a layer path contains ':' or ','")
    options = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    if len(options) >= _PAGE:
        raise ValueError(f"{len(lowers)} layers exceed overlayfs's mount option size")
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount overlay on {target}: {os.strerror(code)}")


def _umount(target: Path) -> None:
    if _libc.umount2(str(target).encode(), 0) == 0:
        return
    code = ctypes.get_errno()
    if code == errno.EBUSY and _libc.umount2(str(target).encode(), _MNT_DETACH) == 0:
        return
    if code == errno.EINVAL and not is_mounted(target):
        return  # not (or no longer) a mount point
    raise OSError(code, f"umount {target}: {os.strerror(code)}")


# ------------------------------------------------------------------ copying


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _copy_attrs(src: Path, dst: Path, st: os.stat_result) -> None:
    with contextlib.suppress(PermissionError):
        os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(src, follow_symlinks=False):
        if name != OPAQUE_XATTR:
            with contextlib.suppress(OSError):
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)  # fmt: skip
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _merge_layer(layer: Path, root: Path) -> None:
    """Apply one layer directory (overlayfs whiteouts included) onto ``root``."""
    links: dict[tuple[int, int], Path] = {}
    dirs: list[tuple[Path, Path, os.stat_result]] = []
    for current, subdirs, files in os.walk(layer):
        src_dir = Path(current)
        dst_dir = root / src_dir.relative_to(layer)
        for name in [*subdirs, *files]:
            src, dst = src_dir / name, dst_dir / name
            st = os.lstat(src)
            if _is_whiteout(st):
                _remove(dst)
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = OPAQUE_XATTR in os.listxattr(src, follow_symlinks=False)
                if opaque or not dst.is_dir() or dst.is_symlink():
                    _remove(dst)  # replaced: an opaque dir hides what was below
                    os.mkdir(dst, 0o700)
                dirs.append((src, dst, st))
                continue
            _remove(dst)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], dst, follow_symlinks=False)
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(src, dst, follow_symlinks=False)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(dst, 0o600)
            else:
                try:
                    os.mknod(dst, st.st_mode, st.st_rdev)
                except PermissionError:
                    continue
            links[key] = dst
            _copy_attrs(src, dst, st)
    for src, dst, st in reversed(dirs):
        _copy_attrs(src, dst, st)
    _copy_attrs(layer, root, os.lstat(layer))


def copy_layers(layers: Sequence[Path], target: Path) -> None:
    """Build a plain directory tree at ``target`` from ``layers`` (bottom first)."""
    staging = target.with_name(target.name + ".partial")
    _remove(staging)
    staging.mkdir(mode=0o755)
    try:
        for layer in layers:
            _merge_layer(layer, staging)
        (staging / _COPY_MARKER).touch()
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ------------------------------------------------------------- the calls


def prepare(layers: Sequence[Path], dest: Path, *, overlay: bool = True) -> Path:
    """The writable root of one container at ``dest/rootfs`` over ``layers``
    (bottom first); ``overlay=False`` always copies. Blocking."""
    target, upper, work = dest / "rootfs", dest / "upper", dest / "work"
    if is_mounted(target) or (target / _COPY_MARKER).exists():
        return target
    created = [p for p in (dest, target, upper, work) if not p.exists()]
    try:
        for path in (dest, upper, work):
            path.mkdir(mode=0o755, exist_ok=True)
        if overlay:
            if target.exists() and any(target.iterdir()):
                _remove(target)  # not ours to keep: neither our mount nor a finished copy
            target.mkdir(mode=0o755, exist_ok=True)
            try:
                _mount_overlay(list(reversed(layers)), upper, work, target)
                return target
            except (OSError, ValueError):
                target.rmdir()  # no overlayfs here: copy instead
        _remove(target)
        copy_layers(layers, target)
        return target
    except BaseException as exc:
        if is_mounted(target):
            _umount(target)
        for path in reversed(created):
            _remove(path)
        if isinstance(exc, OSError):
            raise ImageError(f"preparing the root filesystem at {dest}: {exc}") from exc
        raise


def release(dest: Path) -> None:
    """Unmount and remove ``dest`` (as made by :func:`prepare`); idempotent. Blocking."""
    target = dest / "rootfs"
    try:
        if is_mounted(target):
            _umount(target)
        left = sorted(m for m in mount_points() if m == str(dest) or m.startswith(f"{dest}/"))
        if left:  # never delete through a mount
            raise ImageError(f"releasing the root filesystem at {dest}: still mounted: {', '.join(left)}")
        _remove(dest)
    except OSError as exc:
        raise ImageError(f"releasing the root filesystem at {dest}: {exc}") from exc
