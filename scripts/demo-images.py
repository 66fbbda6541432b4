"""Build the tour's images offline and load them into a node's image store.

No registry can be reached from a fresh machine without internet, so the
README's tour uses two small images built here from Debian's busybox-static
with umoci (the same builder the tests use): ``busybox:1`` (``sh``) and
``httpd:1`` (busybox httpd serving a page with the pod's hostname). Each is
written as an OCI archive under ``.cache/demo/`` and loaded with
``kubevisor image import`` into ``DATA_DIR/images`` (default ``.kubevisor``).
Run by ``make demo-images``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.images import build, busybox_recipe, httpd_recipe, oci_archive  # noqa: E402


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0]) if argv else ROOT / ".kubevisor"
    out = ROOT / ".cache" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    kubevisor = Path(sys.executable).parent / "kubevisor"
    for name, recipe in (("busybox:1", busybox_recipe()), ("httpd:1", httpd_recipe())):
        archive = oci_archive(build(recipe), out / (name.replace(":", "-") + ".tar"), name)
        subprocess.run([str(kubevisor), "image", "import", str(archive), "--data-dir",
                        str(data_dir)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
