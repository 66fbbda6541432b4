"""The VM Operator API (group ``vmoperator.vmware.com``), field-compatible
with the public VM Operator so manifests written for the vSphere
Supervisor apply unchanged.

Modules: ``fields`` (a vocabulary for schemas as data), ``common`` (shared
schema pieces), one schema module per kind (``vmspec``/``vmstatus``/``vm``,
``vmclass``, ``images``, ``vmservice``, ``requests``), ``defaults``,
``columns``, ``conversion`` (between versions through v1alpha6) and
``kinds`` (the ResourceTypes ``api.builtin`` registers).
"""
