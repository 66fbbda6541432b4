"""Guest images built offline from Debian packages: the small test guest
(Debian kernel + busybox initramfs that reads a NoCloud seed), also as a kernel-boot disk image."""

from kubevisor.runtime.guest.bootdisk import build_test_disk_image
from kubevisor.runtime.guest.image import (
    READY_PREFIX,
    GuestImage,
    build_test_disk,
    build_test_guest,
)

__all__ = ["READY_PREFIX", "GuestImage", "build_test_disk", "build_test_disk_image",
           "build_test_guest"]
