"""The node agent's part of a VirtualMachine's status (pure).

:func:`node_status` takes the status as read from the API and what the
worker observed, and returns a new status where only the fields the
contract gives the node agent changed: powerState, uniqueID, biosUUID,
instanceUUID, hardware, network, volumes, lastRestartTime, and the
conditions VirtualMachineCreated, VirtualMachinePowerStateSynced, Ready and
VirtualMachineClassConfigurationSynced. Everything else (the controller's
conditions, nodeName, class, image) is kept as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubevisor.api.vmoperator import resolve
from kubevisor.node.vms.plan import ON, SUSPENDED, desired_power

JSON = dict[str, Any]
CLASS_SYNCED = "VirtualMachineClassConfigurationSynced"


@dataclass(frozen=True, slots=True)
class NicStatus:
    name: str
    mac: str
    cidr: str


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    message: str


@dataclass(slots=True)
class Observation:
    """What one sync of the worker found."""

    power: str | None  # PoweredOn/PoweredOff/Suspended; None: not defined on the host
    node: str
    bios_uuid: str
    instance_uuid: str
    cpus: int = 0  # of the running VM (else as defined)
    memory_bytes: int = 0
    nics: Sequence[NicStatus] = ()
    hostname: str = ""
    ip_up: bool = False  # the primary address answers on TCP
    probe: bool | None = None  # the readiness probe's answer (None: no probe)
    prepare: Problem | None = None  # why the VM cannot be defined or started
    power_problem: Problem | None = None  # a power operation that failed
    pending_restart: str = ""  # why the running VM differs from its definition
    last_restart: str = ""
    volumes: Sequence[JSON] = field(default_factory=list)


def _mib(value: int) -> str:
    if value % (1 << 30) == 0:
        return f"{value >> 30}Gi"
    if value % (1 << 20) == 0:
        return f"{value >> 20}Mi"
    return str(value)


def _conditions(status: JSON, vm: Mapping[str, Any], obs: Observation) -> None:
    gen = (vm.get("metadata") or {}).get("generation")
    want = desired_power(vm)

    def put(type_: str, ok: bool, reason: str, message: str) -> None:
        resolve.set_condition(status, type_, "True" if ok else "False", reason, message,
                              generation=gen)

    if obs.prepare is not None and obs.power is None:
        put(resolve.CREATED, False, obs.prepare.reason, obs.prepare.message)
    elif obs.power is None:
        put(resolve.CREATED, False, "Creating", f"the VM is being created on node {obs.node}")
    else:
        put(resolve.CREATED, True, "Created", f"the VM is defined on node {obs.node}")

    if obs.power_problem is not None:
        put(resolve.POWER_SYNCED, False, obs.power_problem.reason, obs.power_problem.message)
    elif obs.prepare is not None and obs.power != want:
        put(resolve.POWER_SYNCED, False, obs.prepare.reason, obs.prepare.message)
    elif want == SUSPENDED and obs.power not in (ON, SUSPENDED):
        put(resolve.POWER_SYNCED, False, "CannotSuspendPoweredOffVM",
            "a VM that is powered off cannot be suspended; power it on first")
    elif obs.power == want:
        put(resolve.POWER_SYNCED, True, want, f"the VM is {want}")
    else:
        put(resolve.POWER_SYNCED, False, "PowerStateChanging",
            f"the VM is {obs.power or 'not created'}, changing to {want}")

    if obs.pending_restart:
        put(CLASS_SYNCED, False, "PendingRestart", obs.pending_restart)
    elif obs.power is not None:
        put(CLASS_SYNCED, True, "Synced", "the VM runs with the hardware of its class")

    if obs.power != ON:
        put(resolve.READY, False, "NotPoweredOn", f"the VM is {obs.power or 'not created'}")
    elif not obs.ip_up:
        put(resolve.READY, False, "WaitingForIP",
            "waiting for the guest to answer on its primary IPv4 address")
    elif obs.probe is False:
        put(resolve.READY, False, "ReadinessProbeFailed",
            "the readiness probe (spec.readinessProbe) does not succeed yet")
    else:
        put(resolve.READY, True, "Ready", "the guest answers on its primary IPv4 address")


def node_status(old: Mapping[str, Any] | None, vm: Mapping[str, Any], obs: Observation) -> JSON:
    """A copy of ``old`` with the node agent's fields set from ``obs``."""
    status: JSON = copy.deepcopy(dict(old or {}))
    uid = (vm.get("metadata") or {}).get("uid") or ""
    if obs.power is not None:
        status["powerState"] = obs.power
    else:
        status.pop("powerState", None)
    status["uniqueID"] = uid
    status["biosUUID"] = obs.bios_uuid
    status["instanceUUID"] = obs.instance_uuid
    if obs.cpus:
        hardware = dict(status.get("hardware") or {})
        hardware["cpu"] = {**(hardware.get("cpu") or {}), "total": obs.cpus}
        hardware["memory"] = {**(hardware.get("memory") or {}), "total": _mib(obs.memory_bytes)}
        status["hardware"] = hardware
    network: JSON = {}
    if obs.hostname:
        network["hostName"] = obs.hostname
    if obs.power == ON and obs.nics:
        network["interfaces"] = [
            {"name": nic.name, "ip": {"addresses": [{"address": nic.cidr, "origin": "manual",
                                                      "state": "preferred"}],
                                      "macAddr": nic.mac}}
            for nic in obs.nics]
        if obs.ip_up:
            network["primaryIP4"] = obs.nics[0].cidr.split("/")[0]
    if network:
        status["network"] = network
    else:
        status.pop("network", None)
    if obs.volumes:
        status["volumes"] = list(obs.volumes)
    else:
        status.pop("volumes", None)
    if obs.last_restart:
        status["lastRestartTime"] = obs.last_restart
    _conditions(status, vm, obs)
    return status
