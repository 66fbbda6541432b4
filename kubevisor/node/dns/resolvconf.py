"""A pod's /etc/resolv.conf, as kubelet composes it.

:func:`parse_resolv_conf` reads the host's file the way kubelet does
(nameserver lines accumulate, the last ``search`` and ``options`` lines
win, search domains lose a trailing dot); :func:`pod_dns` turns a Pod's
``dnsPolicy`` and ``dnsConfig`` into a :class:`PodDNS`:

- ``ClusterFirst`` (the default): the cluster DNS server only, search
  ``<ns>.svc.<zone> svc.<zone> <zone>`` then the host's domains, ``ndots:5``;
  a ``hostNetwork`` pod falls back to ``Default`` unless its policy is
  ``ClusterFirstWithHostNet``; with no cluster DNS server known it falls
  back to ``Default`` too (and says so in ``warnings``).
- ``Default``: the host's nameservers, search domains and options.
- ``None``: nothing but ``dnsConfig``.

``dnsConfig`` nameservers and searches are appended without duplicates,
its options override same-named ones; then kubelet's limits apply (3
nameservers, 32 search domains, 2,048 characters of search line, no
domain over 253 characters), each cut reported in ``warnings`` as
(event reason, message) with kubelet's words, for the caller to emit as
Warning events. Pure but for :func:`write_resolv_conf`, which the node's
pod worker calls to write the file it mounts at /etc/resolv.conf.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

DEFAULT_ZONE = "cluster.local"
MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_LINE_CHARS = 2048
MAX_DOMAIN_CHARS = 253
#: Where systemd-resolved keeps the real upstreams when /etc/resolv.conf
#: names only its loopback stub (kubeadm points kubelet at it likewise).
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"


@dataclass(frozen=True, slots=True)
class HostResolv:
    """The parts of a resolv.conf that kubelet reads."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PodDNS:
    """What one pod's resolver is told; ``warnings`` are (reason, message)
    of the Warning events kubelet emits for it."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    warnings: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def render(self) -> str:
        """The file's text, in the order container runtimes write it."""
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines.extend(f"nameserver {ns}" for ns in self.nameservers)
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n" if lines else ""


def parse_resolv_conf(text: str) -> HostResolv:
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.strip().split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return HostResolv(tuple(nameservers), tuple(searches), tuple(options))


def read_host_resolv(path: str | Path = "/etc/resolv.conf") -> HostResolv:
    """The host's resolver settings (empty when the file is missing)."""
    try:
        return parse_resolv_conf(Path(path).read_text())
    except OSError:
        return HostResolv()


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def read_pod_host_resolv(path: str | Path = "/etc/resolv.conf", *,
                         fallback: str | Path = SYSTEMD_RESOLV_CONF) -> HostResolv:
    """The host's settings as pods with ``dnsPolicy: Default`` should get
    them: a pod has its own loopback, so when ``path`` names only loopback
    stubs (systemd-resolved's 127.0.0.53) the real upstreams come from
    ``fallback`` if it exists."""
    host = read_host_resolv(path)
    if host.nameservers and all(_is_loopback(ns) for ns in host.nameservers):
        real = read_host_resolv(fallback)
        if real.nameservers:
            return real
    return host


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: list[str], extra: list[JSON]) -> list[str]:
    merged: dict[str, str] = {}
    for option in existing:
        name, _, value = option.partition(":")
        merged[name] = value
    for option in extra:
        name = str(option.get("name") or "")
        if name:
            value = option.get("value")
            merged[name] = "" if value is None else str(value)
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _fit_searches(searches: list[str], warnings: list[tuple[str, str]]) -> list[str]:
    fitted = searches[:MAX_SEARCH_PATHS]
    exceeded = len(fitted) < len(searches)
    kept = [s for s in fitted if len(s) <= MAX_DOMAIN_CHARS]
    exceeded = exceeded or len(kept) < len(fitted)
    while kept and len(" ".join(kept)) > MAX_SEARCH_LINE_CHARS:
        kept.pop()
        exceeded = True
    if exceeded:
        warnings.append(("DNSConfigForming",
                         "Search Line limits were exceeded, some search paths have been "
                         f"omitted, the applied search line is: {' '.join(kept)}"))
    return kept


def _fit_nameservers(nameservers: list[str], warnings: list[tuple[str, str]]) -> list[str]:
    if len(nameservers) <= MAX_NAMESERVERS:
        return nameservers
    kept = nameservers[:MAX_NAMESERVERS]
    warnings.append(("DNSConfigForming",
                     "Nameserver limits were exceeded, some nameservers have been omitted, "
                     f"the applied nameserver line is: {' '.join(kept)}"))
    return kept


def pod_dns(pod: JSON, *, nameserver: str | None, zone: str = DEFAULT_ZONE,
            host: HostResolv = HostResolv()) -> PodDNS:
    """The resolver settings of ``pod``; ``nameserver`` is the cluster DNS
    server's address (None when the node has none), ``host`` the settings
    read by :func:`read_pod_host_resolv`."""
    spec = pod.get("spec") or {}
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    warnings: list[tuple[str, str]] = []

    if policy == "None":
        kind = "none"
    elif policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network):
        kind = "cluster"
    elif policy in ("ClusterFirst", "Default"):
        kind = "host"
    else:  # the apiserver rejects other values; kubelet treats them as ClusterFirst
        kind = "cluster"
    if kind == "cluster" and not nameserver:
        warnings.append(("MissingClusterDNS",
                         'kubelet does not have ClusterDNS IP configured and cannot create Pod '
                         'using "ClusterFirst" policy. Falling back to "Default" policy.'))
        kind = "host"

    nameservers: list[str]
    searches: list[str]
    options: list[str]
    if kind == "none":
        nameservers, searches, options = [], [], []
    elif kind == "cluster":
        assert nameserver is not None
        zone = zone.strip(".")
        nameservers = [nameserver]
        searches = _dedupe([f"{namespace}.svc.{zone}", f"svc.{zone}", zone, *host.searches])
        options = ["ndots:5"]
    else:
        nameservers, searches, options = list(host.nameservers), list(host.searches), list(host.options)

    config = spec.get("dnsConfig")
    if isinstance(config, dict):
        nameservers = _dedupe([*nameservers, *(str(n) for n in config.get("nameservers") or [])])
        searches = _dedupe([*searches, *(str(s) for s in config.get("searches") or [])])
        options = _merge_options(options, [o for o in config.get("options") or []
                                           if isinstance(o, dict)])
    nameservers = _fit_nameservers(nameservers, warnings)
    searches = _fit_searches(searches, warnings)
    return PodDNS(tuple(nameservers), tuple(searches), tuple(options), tuple(warnings))


def resolv_conf(pod: JSON, *, nameserver: str | None, zone: str = DEFAULT_ZONE,
                host: HostResolv = HostResolv()) -> str:
    """:func:`pod_dns` rendered as the file's text."""
    return pod_dns(pod, nameserver=nameserver, zone=zone, host=host).render()


def write_resolv_conf(pod: JSON, etc_dir: Path, *, nameserver: str | None,
                      zone: str = DEFAULT_ZONE, host: HostResolv | None = None) -> PodDNS:
    """Write ``etc_dir/resolv.conf`` for ``pod`` (atomically, mode 0644) and
    return what was written; ``host`` None reads :func:`read_pod_host_resolv`.
    Blocking file I/O: call it in a thread from async code."""
    config = pod_dns(pod, nameserver=nameserver, zone=zone,
                     host=read_pod_host_resolv() if host is None else host)
    etc_dir.mkdir(parents=True, exist_ok=True)
    tmp = etc_dir / ".resolv.conf.tmp"
    tmp.write_text(config.render())
    tmp.chmod(0o644)
    tmp.replace(etc_dir / "resolv.conf")
    return config
