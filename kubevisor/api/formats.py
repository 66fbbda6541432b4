"""String formats of OpenAPI schemas, as kube-openapi's strfmt registry checks them.

``FORMATS`` maps a ``format`` (date-time, uuid, ipv4, cidr, byte…) to a
predicate over strings; unknown formats are not checked, as upstream.
Used by ``api.validation`` when compiling schemas. Also the int64 range
(``is_int64``, ``parse_int64``) of the API's integer parameters.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from datetime import date, datetime

_UUID = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_HOSTNAME = re.compile(
    r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|"
    r"([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}"
    r"([a-zA-Z\p{L}]){2,63})$".replace(r"\p{S}", "").replace(r"\p{L}", "")
)
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}([0-9A-Fa-f]{2})$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w))+$")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def is_int64(value: object) -> bool:
    """A JSON integer (not a bool) that Go decodes into an int64."""
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def parse_int64(raw: str) -> int:
    """``raw`` as Go's strconv.ParseInt(raw, 10, 64) reads it (query
    parameters and resource versions are int64 in kube-apiserver; a larger
    number would overflow the store). ValueError when it isn't one."""
    value = int(raw)
    if not is_int64(value):
        raise ValueError(f"{raw!r} is out of range for int64")
    return value


def _is_datetime(s: str) -> bool:
    try:
        datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in s or "t" in s or " " in s


def _is_date(s: str) -> bool:
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return True


def _is_ip(s: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(s).version == version
    except ValueError:
        return False


def _is_cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s


def _is_byte(s: str) -> bool:
    try:
        base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _is_datetime,
    "datetime": _is_datetime,
    "date": _is_date,
    "uuid": lambda s: bool(_UUID.match(s)),
    "ipv4": lambda s: _is_ip(s, 4),
    "ipv6": lambda s: _is_ip(s, 6),
    "cidr": _is_cidr,
    "mac": lambda s: bool(_MAC.match(s)),
    "hostname": lambda s: len(s) <= 255 and bool(_HOSTNAME.match(s)),
    "email": lambda s: bool(_EMAIL.match(s)),
    "byte": _is_byte,
    "duration": lambda s: bool(_DURATION.match(s)),
}
