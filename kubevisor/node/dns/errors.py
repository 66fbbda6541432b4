"""The cluster DNS server's errors (raised by :mod:`kubevisor.node.dns.server`).

::

    DNSError
    └── DNSServerError   the server cannot listen (address in use, no permission)
"""

from __future__ import annotations


class DNSError(Exception):
    """Base of the cluster DNS errors."""


class DNSServerError(DNSError):
    """The server could not bind its UDP or TCP socket."""
