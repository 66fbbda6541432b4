"""Schema pieces the VM Operator kinds share: conditions, references to
other objects and Secret keys, label selectors, quantities of CPU and
memory. Called by the per-kind schema modules of this package.
"""

from __future__ import annotations

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator.fields import (
    arr,
    integer,
    obj,
    quantity,
    string,
    time,
)

CONTROLLER_TYPES = ("IDE", "NVME", "SCSI", "SATA")
POWER_STATES = ("PoweredOff", "PoweredOn", "Suspended")
POWER_OP_MODES = ("Hard", "Soft", "TrySoft")


def conditions(desc: str = "Conditions describe the observed state of this object.", *,
               keyed: bool = False) -> JSON:
    """A list of metav1.Condition; ``keyed``: a list-map by type (as some
    upstream kinds declare it)."""
    return arr(obj(
        "One aspect of the object's state.",
        required=("lastTransitionTime", "message", "reason", "status", "type"),
        lastTransitionTime=time("When the condition last changed status."),
        message=string("A human readable explanation of the condition.", max_length=32768),
        observedGeneration=integer("The metadata.generation the condition was set for.",
                                   fmt="int64", minimum=0),
        reason=string("A CamelCase word saying why the condition is in its status.",
                      min_length=1, max_length=1024,
                      pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"),
        status=string("True, False or Unknown.", enum=("True", "False", "Unknown")),
        type=string("The condition's type, e.g. Ready.", max_length=316,
                    pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"),
    ), desc, map_keys=("type",) if keyed else ())


def typed_ref(desc: str, *, required: tuple[str, ...] = ("apiVersion", "kind", "name")) -> JSON:
    """A reference to an object by apiVersion, kind and name."""
    return obj(
        desc, required=required,
        apiVersion=string("The API version of the referenced object."),
        kind=string("The kind of the referenced object."),
        name=string("The name of the referenced object."),
    )


def local_ref(desc: str) -> JSON:
    """A reference to an object in the same namespace by kind and name."""
    return obj(desc, required=("kind", "name"),
               kind=string("The kind of the referenced object."),
               name=string("The name of the referenced object."))


def secret_key(desc: str, *, default_key: str | None = None,
               required: tuple[str, ...] = ("key", "name")) -> JSON:
    """A key of a Secret (or ConfigMap) in the object's namespace."""
    return obj(desc, required=required,
               key=string("The key of the Secret's data to use.", default=default_key),
               name=string("The name of the Secret in the same namespace."))


def value_or_secret(desc: str) -> JSON:
    """An inline value, or one read from a Secret key."""
    return obj(desc,
               **{"from": secret_key("Read the value from this Secret key."),
                  "value": string("The value itself.")})


def label_selector(desc: str) -> JSON:
    return obj(
        desc,
        matchExpressions=arr(obj(
            "A label requirement.", required=("key", "operator"),
            key=string("The label key."),
            operator=string("In, NotIn, Exists or DoesNotExist."),
            values=arr(string(), "Values for In and NotIn.", list_type="atomic"),
        ), "Label requirements, ANDed.", list_type="atomic"),
        matchLabels={"type": "object", "additionalProperties": {"type": "string"},
                     "description": "Labels that must all match."},
    )


def cpu_memory(desc: str, *, cpu_desc: str = "CPU.", memory_desc: str = "Memory.") -> JSON:
    return obj(desc, cpu=quantity(cpu_desc), memory=quantity(memory_desc))


def key_values(desc: str, *, keyed: bool = True) -> JSON:
    """A list of key/value pairs (a list-map by key if ``keyed``)."""
    return arr(obj("A key and its value.", required=("key",), key=string("The key."),
                   value=string("The value.")), desc, map_keys=("key",) if keyed else ())
