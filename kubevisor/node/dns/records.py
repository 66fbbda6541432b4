"""Name → answer, as CoreDNS's kubernetes plugin answers for the cluster zone.

:meth:`Zone.lookup` is pure over a :class:`~kubevisor.node.dns.catalog.Catalog`
and returns a :class:`Lookup` (rcode, sections, and whether the question
belongs to the upstream instead). The names it knows (zone ``cluster.local``
by default, TTL 5 s, as CoreDNS):

- ``<svc>.<ns>.svc.<zone>`` A/AAAA: the cluster IP; a headless service
  (clusterIP None): its ready endpoint IPs; ExternalName: a CNAME to
  ``spec.externalName`` for any type (followed in the zone, or marked for
  the upstream to follow). SRV on it: one record per port.
- ``<host>.<svc>.<ns>.svc.<zone>``: an endpoint by its hostname (set for
  StatefulSet pods) or its dashed IP (``10-88-0-5``).
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV: the named port; the
  target is the service (cluster IP) or each endpoint (headless), with
  their addresses in the additional section.
- ``<a-b-c-d>.<ns>.pod.<zone>`` A: the dashed address ("pods insecure").
- PTR ``d.c.b.a.in-addr.arpa``: cluster IPs → the service name, endpoint
  IPs → the endpoint's name; other addresses go upstream (CoreDNS's
  ``fallthrough in-addr.arpa``).
- The apex's SOA and NS, ``ns.dns.<zone>``, ``dns-version.<zone>`` TXT.

A name in the zone that does not exist is NXDOMAIN, a name that exists
without the asked type NOERROR with no answer; both carry the zone's SOA
in the authority section. Names outside the zone are the upstream's.
Called by :class:`kubevisor.node.dns.server.DNSServer` for each question.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from kubevisor.node.dns.catalog import Catalog, EndpointAddress, cluster_ips, is_headless

JSON = dict[str, Any]
RRset = dns.rrset.RRset
A, AAAA, SRV, PTR = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV, dns.rdatatype.PTR
CNAME, SOA, NS, TXT = dns.rdatatype.CNAME, dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.TXT
ANY = dns.rdatatype.ANY
#: The schema version of the Kubernetes DNS specification these names follow.
DNS_SCHEMA_VERSION = "1.1.0"
_REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))
_MAX_CNAME_CHAIN = 8


@dataclass(slots=True)
class Lookup:
    """The outcome of one question. ``forward``: the upstream answers it
    whole. ``chase``: a CNAME target outside the zone whose records (of the
    asked type) the upstream should add to ``answer``."""

    rcode: int = dns.rcode.NOERROR
    answer: list[RRset] = field(default_factory=list)
    authority: list[RRset] = field(default_factory=list)
    additional: list[RRset] = field(default_factory=list)
    authoritative: bool = True
    forward: bool = False
    chase: dns.name.Name | None = None


def _rrset(name: dns.name.Name, ttl: int, rdtype: dns.rdatatype.RdataType,
           texts: list[str]) -> RRset:
    return dns.rrset.from_text_list(name, ttl, dns.rdataclass.IN, rdtype, texts)


def _ip_type(ip: str) -> dns.rdatatype.RdataType:
    return A if ipaddress.ip_address(ip).version == 4 else AAAA


class Zone:
    """The cluster zone over one catalog."""

    def __init__(self, catalog: Catalog, *, zone: str = "cluster.local", ttl: int = 5,
                 server_ip: str | None = None) -> None:
        self.catalog = catalog
        self.origin = dns.name.from_text(zone.strip(".") + ".")
        self.ttl = ttl
        self.server_ip = server_ip

    # ------------------------------------------------------------ helpers

    def name(self, *labels: str) -> dns.name.Name:
        return dns.name.Name([label.encode() for label in labels]).concatenate(self.origin)

    def soa(self) -> RRset:
        text = (f"{self.name('ns', 'dns')} {self.name('hostmaster')} "
                f"{self.catalog.serial % 2**32} 7200 1800 86400 {self.ttl}")
        return _rrset(self.origin, self.ttl, SOA, [text])

    def _negative(self, rcode: int) -> Lookup:
        return Lookup(rcode=rcode, authority=[self.soa()])

    def _nodata(self) -> Lookup:
        return self._negative(dns.rcode.NOERROR)

    def _nxdomain(self) -> Lookup:
        return self._negative(dns.rcode.NXDOMAIN)

    def _addresses(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType,
                   ips: list[str]) -> Lookup:
        """A/AAAA records of ``ips`` matching ``qtype``; NODATA if none match."""
        wanted = [ip for ip in dict.fromkeys(ips)
                  if qtype == ANY or _ip_type(ip) == qtype]
        out = Lookup()
        for rdtype in (A, AAAA):
            texts = [ip for ip in wanted if _ip_type(ip) == rdtype]
            if texts:
                out.answer.append(_rrset(qname, self.ttl, rdtype, texts))
        return out if out.answer else self._nodata()

    def _address_records(self, targets: dict[dns.name.Name, list[str]]) -> list[RRset]:
        out = []
        for target, ips in targets.items():
            for rdtype in (A, AAAA):
                texts = [ip for ip in dict.fromkeys(ips) if _ip_type(ip) == rdtype]
                if texts:
                    out.append(_rrset(target, self.ttl, rdtype, texts))
        return out

    def _srv(self, qname: dns.name.Name, entries: list[tuple[int, dns.name.Name, list[str]]]) -> Lookup:
        """SRV records (port, target, target's IPs), weight split evenly."""
        if not entries:
            return self._nodata()
        weight = max(1, 100 // len(entries))
        texts = [f"0 {weight} {port} {target}" for port, target, _ in entries]
        targets: dict[dns.name.Name, list[str]] = {}
        for _, target, ips in entries:
            targets.setdefault(target, []).extend(ips)
        return Lookup(answer=[_rrset(qname, self.ttl, SRV, list(dict.fromkeys(texts)))],
                      additional=self._address_records(targets))

    # ------------------------------------------------------------ lookup

    def lookup(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Lookup:
        """Answer ``qname``/``qtype`` (class IN) from the catalog."""
        return self._lookup(qname, qtype, seen=frozenset())

    def in_zone(self, qname: dns.name.Name) -> bool:
        return qname.is_subdomain(self.origin)

    def _lookup(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType, *,
                seen: frozenset[dns.name.Name]) -> Lookup:
        if any(qname.is_subdomain(z) for z in _REVERSE_ZONES):
            return self._reverse(qname, qtype)
        if not self.in_zone(qname):
            return Lookup(forward=True, authoritative=False)
        labels = [label.decode("utf-8", "replace").lower()
                  for label in qname.relativize(self.origin).labels]
        if labels == ["@"]:
            labels = []
        labels.reverse()  # most significant first: ["svc", ns, svc, ...]
        if not labels:
            return self._apex(qname, qtype)
        top, rest = labels[0], labels[1:]
        if top == "svc":
            return self._svc(qname, qtype, rest, seen=seen)
        if top == "pod":
            return self._pod(qname, qtype, rest)
        if top == "dns-version" and not rest:
            if qtype in (TXT, ANY):
                return Lookup(answer=[_rrset(qname, self.ttl, TXT, [f'"{DNS_SCHEMA_VERSION}"'])])
            return self._nodata()
        if top == "dns" and rest in ([], ["ns"]):
            if rest and self.server_ip and qtype in (_ip_type(self.server_ip), ANY):
                return self._addresses(qname, qtype, [self.server_ip])
            return self._nodata()
        return self._nxdomain()

    def _apex(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Lookup:
        if qtype in (SOA, ANY):
            return Lookup(answer=[self.soa()])
        if qtype == NS:
            ns = self.name("ns", "dns")
            return Lookup(answer=[_rrset(qname, self.ttl, NS, [str(ns)])],
                          additional=self._address_records(
                              {ns: [self.server_ip] if self.server_ip else []}))
        return self._nodata()

    def _pod(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType, rest: list[str]) -> Lookup:
        """``rest`` after "pod": [ns] (an empty non-terminal) or [ns, a-b-c-d]."""
        if len(rest) < 2:
            return self._nodata()
        if len(rest) != 2:
            return self._nxdomain()
        try:
            ip = str(ipaddress.IPv4Address(rest[1].replace("-", ".")))
        except ValueError:
            return self._nxdomain()
        return self._addresses(qname, qtype, [ip])

    def _svc(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType, rest: list[str], *,
             seen: frozenset[dns.name.Name]) -> Lookup:
        """``rest`` after "svc": [ns], [ns, svc], [ns, svc, host|_proto], [ns, svc, _proto, _port]."""
        if not rest:
            return self._nodata()
        namespace = rest[0]
        if len(rest) == 1:
            return self._nodata() if self.catalog.has_namespace(namespace) else self._nxdomain()
        svc = self.catalog.service(namespace, rest[1])
        if svc is None or len(rest) > 4:
            return self._nxdomain()
        spec = svc.get("spec") or {}
        if len(rest) == 2:
            if spec.get("type") == "ExternalName":
                return self._external(qname, qtype, svc, seen=seen | {qname})
            return self._service(qname, qtype, namespace, rest[1], svc)
        if len(rest) == 3:
            if rest[2].startswith("_"):  # an empty non-terminal of SRV names
                protocols = {"_" + str(p.get("protocol") or "TCP").lower()
                             for p in spec.get("ports") or []}
                return self._nodata() if rest[2] in protocols else self._nxdomain()
            hits = [a for a in self.catalog.addresses(namespace, rest[1]) if a.hostname == rest[2]]
            if not hits:
                return self._nxdomain()
            return self._addresses(qname, qtype, [a.ip for a in hits])
        return self._port(qname, qtype, namespace, rest[1], svc, proto=rest[2], port=rest[3])

    def _service_name(self, namespace: str, name: str) -> dns.name.Name:
        return self.name(name, namespace, "svc")

    def _endpoint_name(self, namespace: str, name: str, address: EndpointAddress) -> dns.name.Name:
        return self.name(address.hostname, name, namespace, "svc")

    def _service(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType,
                 namespace: str, name: str, svc: JSON) -> Lookup:
        headless = is_headless(svc)
        addresses = self.catalog.addresses(namespace, name) if headless else []
        if qtype in (A, AAAA, ANY):
            ips = [a.ip for a in addresses] if headless else cluster_ips(svc)
            return self._addresses(qname, qtype, ips)
        if qtype == SRV:
            entries: list[tuple[int, dns.name.Name, list[str]]] = []
            if headless:
                for address in addresses:
                    target = self._endpoint_name(namespace, name, address)
                    entries.extend((number, target, [address.ip]) for _, _, number in address.ports)
            else:
                target = self._service_name(namespace, name)
                entries.extend((p["port"], target, cluster_ips(svc))
                               for p in (svc.get("spec") or {}).get("ports") or []
                               if isinstance(p.get("port"), int))
            return self._srv(qname, entries)
        return self._nodata()

    def _port(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType, namespace: str,
              name: str, svc: JSON, *, proto: str, port: str) -> Lookup:
        if not (proto.startswith("_") and port.startswith("_")):
            return self._nxdomain()
        protocol, port_name = proto[1:].upper(), port[1:]
        entries: list[tuple[int, dns.name.Name, list[str]]] = []
        if is_headless(svc):
            for address in self.catalog.addresses(namespace, name):
                target = self._endpoint_name(namespace, name, address)
                entries.extend((number, target, [address.ip]) for pname, pproto, number
                               in address.ports if pname == port_name and pproto == protocol)
        else:
            target = self._service_name(namespace, name)
            entries.extend((p["port"], target, cluster_ips(svc))
                           for p in (svc.get("spec") or {}).get("ports") or []
                           if (p.get("name") or "") == port_name and port_name
                           and str(p.get("protocol") or "TCP") == protocol
                           and isinstance(p.get("port"), int))
        if not entries:
            return self._nxdomain()
        if qtype == SRV:
            return self._srv(qname, entries)
        return self._nodata()

    def _external(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType, svc: JSON, *,
                  seen: frozenset[dns.name.Name]) -> Lookup:
        """A CNAME, followed inside the zone until a name repeats (a loop
        answers the CNAMEs so far) or the chain grows too long."""
        external = str((svc.get("spec") or {}).get("externalName") or "").strip(".")
        if not external:
            return self._nodata()
        try:
            target = dns.name.from_text(external + ".")
        except dns.name.NameTooLong:
            return self._nodata()
        out = Lookup(answer=[_rrset(qname, self.ttl, CNAME, [str(target)])])
        if qtype == CNAME:
            return out
        if not self.in_zone(target):
            out.chase = target
            return out
        if target in seen or len(seen) >= _MAX_CNAME_CHAIN:
            return out
        follow = self._lookup(target, qtype, seen=seen)
        out.rcode = follow.rcode
        out.answer.extend(follow.answer)
        out.authority = follow.authority
        out.additional = follow.additional
        out.chase = follow.chase
        return out

    def _reverse(self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> Lookup:
        try:
            ip = dns.reversename.to_address(qname)
        except Exception:  # a partial or malformed reverse name: not ours
            return Lookup(forward=True, authoritative=False)
        owners = self.catalog.owners(ip)
        if not owners:
            return Lookup(forward=True, authoritative=False)
        if qtype not in (PTR, ANY):
            return Lookup(authority=[self.soa()])
        texts = []
        for namespace, name, hostname in owners:
            labels = (name, namespace, "svc") if hostname is None else (hostname, name, namespace, "svc")
            texts.append(str(self.name(*labels)))
        return Lookup(answer=[_rrset(qname, self.ttl, PTR, list(dict.fromkeys(texts)))])
