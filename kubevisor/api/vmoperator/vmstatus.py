"""The VirtualMachine's status schema (API version v1alpha6), with the public
VM Operator API's field names. Written by kubevisor's VM controller and node
agent through the status subresource. Older versions: ``vm.py``.
"""

from __future__ import annotations

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator.common import (
    CONTROLLER_TYPES,
    POWER_STATES,
    conditions,
    key_values,
    typed_ref,
)
from kubevisor.api.vmoperator.fields import (
    arr,
    boolean,
    integer,
    obj,
    quantity,
    string,
    time,
)

_SNAPSHOT_REF = obj("A snapshot of the VM.", required=("name", "type"),
                    name=string("The snapshot's name."),
                    type=string("Managed (a VirtualMachineSnapshot) or Unmanaged.",
                                enum=("Managed", "Unmanaged"), default="Managed"))


def _dns(desc: str, *, dhcp: bool) -> JSON:
    extra = {"dhcp": boolean("The settings came from DHCP.")} if dhcp else {}
    return obj(desc, domainName=string("The DNS domain name."),
               hostName=string("The host name."),
               nameservers=arr(string(), "DNS servers."),
               searchDomains=arr(string(), "DNS search domains."), **extra)


def _dhcp_status() -> JSON:
    def family(name: str) -> JSON:
        return obj(f"DHCP for {name}.", config=key_values("DHCP client settings."),
                   enabled=boolean("DHCP is on."))
    return obj("DHCP settings seen in the guest.", ip4=family("IPv4"), ip6=family("IPv6"))


_INTERFACE = obj(
    "An interface as the guest reports it.",
    deviceKey=integer("The virtual device's key."),
    dns=_dns("DNS settings of the interface.", dhcp=True),
    ip=obj(
        "IP settings of the interface.",
        addresses=arr(obj("An address.",
                          address=string("The address with its prefix length."),
                          lifetime=time("When the address expires."),
                          origin=string("Where the address came from.", enum=(
                              "dhcp", "linklayer", "manual", "other", "random")),
                          state=string("The address's state.", enum=(
                              "deprecated", "duplicate", "inaccessible", "invalid",
                              "preferred", "tentative", "unknown"))),
                      "The interface's addresses."),
        autoConfigurationEnabled=boolean("IPv6 autoconfiguration is on."),
        dhcp=_dhcp_status(),
        macAddr=string("The interface's MAC address."),
    ),
    name=string("The interface's name in spec.network.interfaces."),
    vmxnet3=obj("VMXNet3 passthrough state.",
                uptv2Active=boolean("Uniform passthrough v2 is active."),
                uptv2Enabled=boolean("Uniform passthrough v2 is enabled."),
                uptv2InactiveReasonOther=arr(string(), "Why it is inactive (host side)."),
                uptv2InactiveReasonVm=arr(string(), "Why it is inactive (VM side).")),
    vnumaNodeID=integer("The interface's virtual NUMA node."),
)

_IP_STACK = obj(
    "An IP stack of the guest.",
    dhcp=_dhcp_status(),
    dns=_dns("The stack's DNS settings.", dhcp=True),
    ipRoutes=arr(obj("A route.",
                     gateway=obj("The next hop.", address=string("Its address."),
                                 device=string("Its device.")),
                     networkAddress=string("The destination network.")), "Routes."),
    kernelConfig=key_values("Kernel network settings."),
)

NETWORK = obj(
    "The VM's network as observed.",
    config=obj(
        "The network configuration given to the guest.",
        dns=_dns("Global DNS settings.", dhcp=False),
        interfaces=arr(obj(
            "One interface's configuration.",
            dns=_dns("The interface's DNS settings.", dhcp=False),
            ip=obj("The interface's IP configuration.",
                   addresses=arr(string(), "Static addresses."),
                   dhcp=obj("DHCP settings.",
                            ip4=obj("IPv4.", enabled=boolean("On.")),
                            ip6=obj("IPv6.", enabled=boolean("On."))),
                   gateway4=string("The IPv4 gateway."),
                   gateway6=string("The IPv6 gateway.")),
            name=string("The interface's name."),
        ), "Per-interface configuration."),
    ),
    hostName=string("The guest's host name."),
    interfaces=arr(_INTERFACE, "The guest's interfaces."),
    ipStacks=arr(_IP_STACK, "The guest's IP stacks."),
    primaryIP4=string("The VM's primary IPv4 address."),
    primaryIP6=string("The VM's primary IPv6 address."),
)

VOLUME = obj(
    "The state of one attached volume.",
    required=("name", "type"),
    attached=boolean("The volume is attached."),
    controllerBusNumber=integer("The bus number of its controller."),
    controllerType=string("The type of its controller.", enum=CONTROLLER_TYPES),
    crypto=obj("The volume's encryption.", keyID=string("The key id."),
               providerID=string("The key provider id.")),
    diskMode=string("The disk mode.", enum=(
        "IndependentNonPersistent", "IndependentPersistent", "NonPersistent", "Persistent")),
    diskUUID=string("The disk's UUID."),
    error=string("Why the volume could not be attached."),
    limit=quantity("The volume's maximum size."),
    name=string("The volume's name."),
    requested=quantity("The size requested."),
    sharingMode=string("The sharing mode.", enum=("MultiWriter", "None")),
    type=string("Managed (from spec.volumes) or Classic (from the image).",
                enum=("Classic", "Managed"), default="Managed"),
    unitNumber=integer("The unit number on its controller."),
    used=quantity("Space used on the host."),
)

_HARDWARE = obj(
    "The VM's virtual hardware as observed.",
    controllers=arr(obj(
        "A device controller.", required=("busNumber", "deviceKey", "type"),
        busNumber=integer("Its bus number."),
        deviceKey=integer("Its device key."),
        devices=arr(obj("A device on it.", required=("type", "unitNumber"),
                        type=string("The device type.", enum=("CDROM", "Disk")),
                        unitNumber=integer("Its unit number.")),
                    "Devices on the controller.", map_keys=("unitNumber",)),
        type=string("The controller type.", enum=CONTROLLER_TYPES),
    ), "Device controllers.", map_keys=("busNumber", "type")),
    cpu=obj("CPU.",
            coresPerSocket=integer("Cores per socket."),
            hotAddEnabled=boolean("CPU hot add is on."),
            iommuEnabled=boolean("A virtual IOMMU is exposed."),
            latencySensitivity=string("The latency sensitivity."),
            limit=integer("The CPU limit in MHz.", fmt="int64"),
            nestedHardwareVirtualizationEnabled=boolean("Nested virtualization is on."),
            performanceCountersEnabled=boolean("Performance counters are exposed."),
            reservation=integer("The CPU reservation in MHz.", fmt="int64"),
            simultaneousThreads=integer("Threads per core."),
            total=integer("The number of vCPUs."),
            vnuma=obj("Virtual NUMA.",
                      autoCoresPerNumaNode=boolean("Cores per node chosen automatically."),
                      coresPerNumaNode=integer("Cores per virtual NUMA node."))),
    memory=obj("Memory.",
               hotAddEnabled=boolean("Memory hot add is on."),
               limit=quantity("The memory limit."),
               reservation=quantity("The memory reservation."),
               reservationLockedToMax=boolean("All memory is reserved."),
               total=quantity("The guest's memory.")),
    vGPUs=arr(obj("A virtual GPU.", migrationType=string("How it migrates."),
                  profile=string("Its profile."), type=string("Its type.")), "Virtual GPUs."),
)

STATUS = obj(
    "The observed state of a VirtualMachine.",
    biosUUID=string("The BIOS UUID the guest sees."),
    changeBlockTracking=boolean("Changed block tracking is on."),
    **{"class": typed_ref("The VirtualMachineClassInstance in use.")},
    conditions=conditions("The VM's conditions: VirtualMachineClassReady, "
                          "VirtualMachineImageReady, VirtualMachineStorageReady, "
                          "VirtualMachineBootstrapReady, VirtualMachineCreated, "
                          "VirtualMachinePowerStateSynced, Ready and others."),
    crypto=obj("The VM's encryption.",
               encrypted=arr(string(), "What is encrypted: Config, Disks."),
               hasVTPM=boolean("The VM has a virtual TPM."),
               keyID=string("The key id."),
               providerID=string("The key provider id.")),
    currentSnapshot=_SNAPSHOT_REF,
    extraConfig=key_values("Extra configuration keys in effect."),
    guest=obj("The guest operating system.", guestFullName=string("Its full name."),
              guestID=string("Its identifier.")),
    hardware=_HARDWARE,
    hardwareVersion=integer("The virtual hardware version."),
    instanceUUID=string("The VM's instance UUID."),
    lastRestartTime=time("When the VM was last restarted through spec.nextRestartTime."),
    network=NETWORK,
    nodeName=string("The node the VM runs on."),
    policies=arr(obj("A policy in effect.", required=("apiVersion", "generation", "kind", "name"),
                     apiVersion=string("Its API version."),
                     generation=integer("The generation applied.", fmt="int64"),
                     kind=string("Its kind."), name=string("Its name.")),
                 "Policies in effect."),
    powerState=string("The VM's power state.", enum=POWER_STATES),
    provider=obj("The provider's view.",
                 creationTimestamp=time("When the provider created the VM.")),
    rootSnapshots=arr(_SNAPSHOT_REF, "Snapshots without a parent."),
    storage=obj("Storage used by the VM.",
                requested=obj("Storage requested.", disks=quantity("By the VM's disks.")),
                total=quantity("All storage the VM uses."),
                usage=obj("Storage used.",
                          disks=quantity("By disks."),
                          other=quantity("By everything else (swap, logs, state)."),
                          snapshots=obj("By snapshots.", vm=quantity("VM snapshots."),
                                        volume=quantity("Volume snapshots.")))),
    uniqueID=string("The VM's identifier on its node."),
    volumes=arr(VOLUME, "The state of the VM's volumes.", map_keys=("name", "type")),
    zone=string("The zone the VM runs in."),
)
