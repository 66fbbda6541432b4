"""Registry credentials from a pod's imagePullSecrets (pure).

``kubernetes.io/dockerconfigjson`` (``.dockerconfigjson``) and
``kubernetes.io/dockercfg`` (``.dockercfg``) Secrets become
``{registry host: RegistryAuth}`` for :meth:`ImageStore.pull`.
Also :func:`pull_policy`, the default ``imagePullPolicy`` rule.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from kubevisor.runtime.types import RegistryAuth

JSON = dict[str, Any]


def _host(key: str) -> str:
    key = key.removeprefix("https://").removeprefix("http://")
    return key.split("/")[0]


def registry_auth(secrets: Iterable[JSON]) -> dict[str, RegistryAuth]:
    out: dict[str, RegistryAuth] = {}
    for secret in secrets:
        data = secret.get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not raw:
            continue
        try:
            doc = json.loads(base64.b64decode(raw))
        except ValueError:
            continue
        auths = doc.get("auths", doc) if isinstance(doc, dict) else {}
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                continue
            user, password = entry.get("username", ""), entry.get("password", "")
            if entry.get("auth") and not user:
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except ValueError:
                    continue
            out.setdefault(_host(key), RegistryAuth(username=user, password=password,
                                                    token=entry.get("identitytoken", "")))
    return out


def pull_policy(container: JSON) -> str:
    """The container's imagePullPolicy, defaulted as the apiserver does."""
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    image = str(container.get("image", ""))
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"
