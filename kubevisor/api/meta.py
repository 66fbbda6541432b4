"""Small pure helpers on object metadata, shared by the apiserver and controllers.

Timestamps in Kubernetes' RFC 3339 form (``2024-01-02T03:04:05Z``, second
precision), name validation (DNS-1123 subdomain and label, DNS-1035 label,
label keys and values) with kube-apiserver's error wording, and owner
references. No I/O, no project imports; callers: the apiserver (object
semantics), controllers (owner references, conditions' timestamps).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

_RE_LABEL = re.compile(_DNS1123_LABEL + r"\Z")
_RE_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN + r"\Z")
_RE_1035 = re.compile(_DNS1035_LABEL + r"\Z")
_RE_QUALIFIED = re.compile(_QUALIFIED_NAME + r"\Z")
_RE_LABEL_VALUE = re.compile(_LABEL_VALUE + r"\Z")


# --- time -----------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """``moment`` as Kubernetes writes metav1.Time: UTC, seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_now_cache: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """The current time in RFC 3339 (second precision; cached per second)."""
    global _now_cache
    second = int(time.time())
    if _now_cache[0] != second:
        _now_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _now_cache[1]


def parse_rfc3339(text: str) -> datetime:
    """Parse a metav1.Time / MicroTime string; raises ValueError if malformed."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def human_duration(seconds: float) -> str:
    """kubectl's short age format (``5s``, ``3m12s``, ``2d4h``, ``400d``)."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rest = days % 365
        return f"{days // 365}y{rest}d" if rest else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


# --- names ----------------------------------------------------------------


def dns1123_subdomain_errors(value: str) -> list[str]:
    """Messages as k8s.io/apimachinery/pkg/util/validation prints them; [] if valid."""
    errs: list[str] = []
    if len(value) > 253:
        errs.append("must be no more than 253 characters")
    if not _RE_SUBDOMAIN.match(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'example.com', regex used for validation is "
            f"'{_DNS1123_SUBDOMAIN}')"
        )
    return errs


def dns1123_label_errors(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _RE_LABEL.match(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
            "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
            f"or '123-abc', regex used for validation is '{_DNS1123_LABEL}')"
        )
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _RE_1035.match(value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
            "start with an alphabetic character, and end with an alphanumeric character "
            f"(e.g. 'my-name',  or 'abc-123', regex used for validation is '{_DNS1035_LABEL}')"
        )
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """Errors of a label/annotation key (``[prefix/]name``)."""
    errs: list[str] = []
    prefix, slash, name = value.rpartition("/")
    if slash:
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns1123_subdomain_errors(prefix))
    if not name:
        errs.append("name part must be non-empty")
        return errs
    if len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _RE_QUALIFIED.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
            f"or '123-abc', regex used for validation is '{_QUALIFIED_NAME}')"
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _RE_LABEL_VALUE.match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
            f"'MyValue',  or 'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
        )
    return errs


# --- owner references -----------------------------------------------------


def owner_reference(
    owner: JSON, *, controller: bool = True, block_owner_deletion: bool = True
) -> JSON:
    """An ownerReferences entry pointing at ``owner`` (which must carry uid)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def controller_of(obj: JSON) -> JSON | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def is_owned_by(obj: JSON, owner_uid: str) -> bool:
    return any(
        ref.get("uid") == owner_uid
        for ref in obj.get("metadata", {}).get("ownerReferences") or ()
    )
