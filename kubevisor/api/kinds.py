"""Kinds as data: what the apiserver serves, declared once.

A :class:`ResourceType` says everything the apiserver, discovery, OpenAPI
and kubectl need to know about one resource at one group/version. Built-in
kinds are declared in ``builtin.py``; a CustomResourceDefinition becomes
ResourceTypes at run time through :meth:`Registry.add`. Callers: the
apiserver (routing, discovery, OpenAPI, Table), controllers (GVK lookups).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]


class Converter(Protocol):
    """Moves objects of one kind between its served versions (what a CRD's
    conversion webhook does). The apiserver stores objects in
    ``storage_version`` and converts on every read and write; a kind
    without a converter passes fields through and only rewrites apiVersion
    (a CRD's conversion strategy None)."""

    @property
    def storage_version(self) -> str:
        """The version objects are stored in."""
        ...

    def convert(self, obj: JSON, version: str, *, previous: JSON | None = None) -> JSON:
        """``obj`` (its apiVersion says which version it is) as ``version``,
        as a new object. ``previous``: the stored object a write replaces,
        whose fields the source version cannot express are kept."""
        ...


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    """One Table column. Either ``json_path`` (as in a CRD's
    additionalPrinterColumns, e.g. ``.spec.replicas``) or ``func`` (a pure
    function of the object, for built-ins such as Pod READY/STATUS)."""

    name: str
    type: str = "string"  # integer, number, string, boolean, date
    format: str = ""
    description: str = ""
    priority: int = 0  # 1: shown with -o wide only
    json_path: str = ""
    func: Callable[[JSON], Any] | None = None


@dataclass(frozen=True, slots=True)
class ScaleSubresource:
    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = ".status.selector"


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
    )
    has_status: bool = True  # a status subresource
    scale: ScaleSubresource | None = None
    printer_columns: tuple[PrinterColumn, ...] = ()
    # OpenAPI v3 schema: for built-ins the name of a component schema
    # (e.g. "io.k8s.api.core.v1.Pod", resolved by api.schemas), for custom
    # resources the CRD's openAPIV3Schema itself.
    schema_name: str | None = None
    schema: JSON | None = None
    # Fields usable in fieldSelector beyond metadata.name/metadata.namespace.
    selectable_fields: tuple[str, ...] = ()
    # Is this version the one objects are stored in (CRDs: storage: true)?
    storage: bool = True
    served: bool = True
    custom: bool = False  # defined by a CRD (no strategic merge patch)
    # A pure function that fills in server-side defaults (kube-apiserver's
    # defaulting) on create and update; None: no defaults.
    defaulter: Callable[[JSON], None] | None = field(default=None, compare=False)
    # Conversion between this kind's versions; None: apiVersion rewrite only.
    converter: Converter | None = field(default=None, compare=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class Registry:
    """All served resource types, looked up by GVR or GVK. Mutable at run
    time (CRDs come and go); readers see a consistent dict swap."""

    def __init__(self, types: Iterable[ResourceType] = ()) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self._by_gvk: dict[tuple[str, str, str], ResourceType] = {}
        for rt in types:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_gvr[(rt.group, rt.version, rt.plural)] = rt
        self._by_gvk[(rt.group, rt.version, rt.kind)] = rt

    def remove(self, group: str, version: str, plural: str) -> None:
        rt = self._by_gvr.pop((group, version, plural), None)
        if rt is not None:
            self._by_gvk.pop((rt.group, rt.version, rt.kind), None)

    def by_resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self._by_gvk.get((group, version, kind))

    def by_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, version, kind)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_gvr.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions served, in declaration order."""
        out: dict[str, list[str]] = {}
        for rt in self:
            if not rt.served:
                continue
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out
