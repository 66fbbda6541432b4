"""The runtime's exceptions. Drivers translate what they call (runc/crun
exit codes, registry HTTP answers, netlink errors) into these where the
failure enters, with ``raise ... from exc``::

    RuntimeFailure                    any runtime driver failure
    ├── ContainerError                an OCI runtime call failed
    │   └── ContainerNotFoundError    no such container
    ├── ImageError                    image store failures
    │   ├── ImagePullError            pull failed (kubelet's ErrImagePull)
    │   │   └── ImageNotFoundError    the registry has no such image or tag
    │   └── ImageFormatError          a manifest, config or layer is malformed
    └── NetworkError                  bridge, namespace, address or rule failures
"""

from __future__ import annotations


class RuntimeFailure(Exception):
    """Base of every runtime driver failure."""


class ContainerError(RuntimeFailure):
    pass


class ContainerNotFoundError(ContainerError):
    pass


class ImageError(RuntimeFailure):
    pass


class ImagePullError(ImageError):
    pass


class ImageNotFoundError(ImagePullError):
    pass


class ImageFormatError(ImageError):
    pass


class NetworkError(RuntimeFailure):
    pass
