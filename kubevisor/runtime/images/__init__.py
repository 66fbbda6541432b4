"""Images on one host: registry pulls, the content-addressed blob and layer
cache, OCI archive import, and container root filesystems.

The node agent uses :class:`LocalImageStore` (the
:class:`~kubevisor.runtime.types.ImageStore` of ``<data-dir>/images``); the
CLI's ``kubevisor image import`` calls its ``import_archive``. Modules, one
noun each: ``reference`` (names), ``manifest`` (JSON documents),
``registry`` (the HTTP client), ``blobs``, ``layers``, ``refs`` (the three
stores on disk), ``flight`` (one download per digest), ``rootfs`` (overlay
or copy), ``archive`` (OCI layout tars), ``store`` (the whole).
"""

from kubevisor.runtime.images.reference import InvalidImageNameError, Reference, parse_reference
from kubevisor.runtime.images.store import LocalImageStore, PruneResult

__all__ = ["InvalidImageNameError", "LocalImageStore", "PruneResult", "Reference", "parse_reference"]
