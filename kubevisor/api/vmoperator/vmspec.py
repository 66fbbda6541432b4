"""The VirtualMachine's spec schema (API version v1alpha6), field for field
as the public VM Operator API names and types them.

kubevisor acts on a subset (see issue 4); every other upstream field is
declared too, so manifests written for the vSphere Supervisor pass strict
field validation. Older versions are derived from this one in ``vm.py``.
"""

from __future__ import annotations

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator.common import (
    CONTROLLER_TYPES,
    POWER_OP_MODES,
    POWER_STATES,
    cpu_memory,
    key_values,
    label_selector,
    local_ref,
    secret_key,
    typed_ref,
    value_or_secret,
)
from kubevisor.api.vmoperator.fields import (
    arr,
    boolean,
    free,
    int_or_string,
    integer,
    obj,
    quantity,
    string,
)

_DEVICE_NAME = r"^[a-z0-9]{2,}$"

_USER = obj(
    "A guest user cloud-init creates.",
    required=("name",),
    create_groups=boolean("Create the user's groups if missing."),
    expiredate=string("The date the account expires (YYYY-MM-DD)."),
    gecos=string("The user's comment (GECOS) field."),
    groups=arr(string(), "Supplementary groups."),
    hashed_passwd=secret_key("A Secret key holding the user's hashed password."),
    homedir=string("The home directory."),
    inactive=integer("Days after the password expires until the account is disabled."),
    lock_passwd=boolean("Disable password login."),
    name=string("The user name."),
    no_create_home=boolean("Do not create a home directory."),
    no_log_init=boolean("Do not add the user to the lastlog and faillog databases."),
    no_user_group=boolean("Do not create a group named after the user."),
    passwd=secret_key("A Secret key holding the user's password hash."),
    primary_group=string("The user's primary group."),
    selinux_user=string("The SELinux user of the login."),
    shell=string("The login shell."),
    snapuser=string("A Snap Store account email to import."),
    ssh_authorized_keys=arr(string(), "SSH public keys authorized to log in as this user."),
    ssh_import_id=arr(string(), "SSH key ids to import (gh:user, lp:user)."),
    ssh_redirect_user=boolean("Refuse SSH logins with a message naming the default user."),
    sudo=string("A sudoers rule for the user, e.g. ALL=(ALL) NOPASSWD:ALL."),
    system=boolean("Create a system user (no home directory)."),
    uid=integer("The user id.", fmt="int64"),
)

_WRITE_FILE = obj(
    "A file cloud-init writes in the guest.",
    required=("path",),
    append=boolean("Append to the file rather than replace it."),
    content=free("The file's content: a string, or a reference to a Secret key."),
    defer=boolean("Write the file late in boot, after users and packages exist."),
    encoding=string("How content is encoded.", default="text/plain", enum=(
        "b64", "base64", "gz", "gzip", "gz+b64", "gz+base64", "gzip+b64", "gzip+base64",
        "text/plain")),
    owner=string("The file's owner as user:group.", default="root:root"),
    path=string("The file's absolute path in the guest."),
    permissions=string("The file's mode in octal.", default="0644"),
)

_CLOUD_INIT = obj(
    "Bootstrap the guest with cloud-init: the NoCloud seed kubevisor attaches to the VM.",
    cloudConfig=obj(
        "A cloud-config document written as structured fields (users, runcmd, write_files).",
        defaultUserEnabled=boolean("Keep the image's default user next to the listed users."),
        runcmd=free("Commands run once at first boot: each a string (run by a shell) or a list "
                    "of arguments."),
        ssh_pwauth=boolean("Allow SSH password authentication."),
        timezone=string("The guest's time zone, e.g. Europe/Paris."),
        users=arr(_USER, "Users to create.", map_keys=("name",)),
        write_files=arr(_WRITE_FILE, "Files to write.", map_keys=("path",)),
    ),
    instanceID=string("The cloud-init instance id; a new value makes cloud-init run again. "
                      "Defaults to the VM's BIOS UUID."),
    rawCloudConfig=secret_key("A Secret key whose value is the whole user-data document "
                              "(a cloud-config, a script, or a MIME multi-part)."),
    sshAuthorizedKeys=arr(string(), "SSH public keys for the default user."),
    useGlobalNameserversAsDefault=boolean("Use the global nameservers for interfaces without "
                                          "their own."),
    useGlobalSearchDomainsAsDefault=boolean("Use the global search domains for interfaces "
                                            "without their own."),
    waitOnNetwork4=boolean("Have cloud-init wait for IPv4 networking before it continues."),
    waitOnNetwork6=boolean("Have cloud-init wait for IPv6 networking before it continues."),
)

_LINUX_PREP = obj(
    "Guest customization of Linux guests by the platform's own tools (not implemented by "
    "kubevisor; accepted for compatibility).",
    customizeAtNextPowerOn=boolean("Customize again at the next power-on."),
    expirePasswordAfterNextLogin=boolean("Expire the root password after the next login."),
    hardwareClockIsUTC=boolean("The hardware clock keeps UTC."),
    password=secret_key("A Secret key holding the root password.", default_key="password",
                        required=("name",)),
    scriptText=value_or_secret("A script run during customization."),
    timeZone=string("The guest's time zone."),
)

_SYSPREP = obj(
    "Windows guest customization with Sysprep (accepted for compatibility).",
    customizeAtNextPowerOn=boolean("Customize again at the next power-on."),
    rawSysprep=secret_key("A Secret key holding a whole unattend.xml document."),
    sysprep=obj(
        "Sysprep settings written as fields.",
        required=("userData",),
        expirePasswordAfterNextLogin=boolean("Expire the administrator password after the "
                                             "next login."),
        guiRunOnce=obj("Commands run at the first login.",
                       commands=arr(string(), "The commands.")),
        guiUnattended=obj(
            "Unattended setup.",
            autoLogon=boolean("Log on automatically as Administrator."),
            autoLogonCount=integer("How many automatic logons."),
            password=secret_key("A Secret key holding the administrator password.",
                                default_key="password"),
            timeZone=integer("The Windows time zone index.", minimum=0, default=85),
        ),
        identification=obj(
            "Domain or workgroup membership.",
            domainAdmin=string("The domain user allowed to join the domain."),
            domainAdminPassword=secret_key("A Secret key holding that user's password.",
                                           default_key="domain_admin_password"),
            domainOU=string("The organizational unit to join."),
            joinWorkgroup=string("The workgroup to join."),
        ),
        licenseFilePrintData=obj(
            "Windows Server licensing.", required=("autoMode",),
            autoMode=string("The licensing mode.", enum=("perSeat", "perServer")),
            autoUsers=integer("Client licenses for perServer mode."),
        ),
        scriptText=value_or_secret("A script run during customization."),
        userData=obj(
            "The registered owner.", required=("fullName", "orgName"),
            fullName=string("The owner's full name.", min_length=1),
            orgName=string("The owner's organization.", min_length=1),
            productID=secret_key("A Secret key holding the product key.",
                                 default_key="product_id"),
        ),
    ),
)

_VAPP = obj(
    "OVF vApp properties (accepted for compatibility).",
    properties=arr(obj("One property.", required=("key",), key=string("The property key."),
                       value=value_or_secret("The property value.")),
                   "Properties to set.", map_keys=("key",)),
    rawProperties=string("The name of a Secret whose data are the properties."),
)

BOOTSTRAP = obj(
    "How the guest is configured at first boot. kubevisor implements cloudInit.",
    cloudInit=_CLOUD_INIT,
    disabled=boolean("Do not bootstrap the guest at all."),
    linuxPrep=_LINUX_PREP,
    sysprep=_SYSPREP,
    vAppConfig=_VAPP,
)


def _affinity_terms(desc: str) -> JSON:
    term = obj("VMs matched by labelSelector within one topology domain.",
               required=("topologyKey",),
               labelSelector=label_selector("The VMs this term refers to."),
               topologyKey=string("The node label whose value defines a topology domain, e.g. "
                                  "topology.kubernetes.io/zone."))
    return obj(
        desc,
        preferredDuringSchedulingPreferredDuringExecution=arr(
            term, "Preferred terms: placement tries to honour them.", list_type="atomic"),
        requiredDuringSchedulingPreferredDuringExecution=arr(
            term, "Required terms: placement must honour them.", list_type="atomic"),
    )


_CDROM = obj(
    "A virtual CD-ROM drive backed by an ISO image.",
    required=("image", "name"),
    allowGuestControl=boolean("Let the guest eject and insert media.", default=True),
    connected=boolean("The drive is connected.", default=True),
    controllerBusNumber=integer("The bus number of the drive's controller."),
    controllerType=string("The type of the drive's controller.", enum=CONTROLLER_TYPES),
    image=local_ref("The ISO image: a VirtualMachineImage or ClusterVirtualMachineImage."),
    name=string("The drive's name, unique in the VM.", pattern=_DEVICE_NAME),
    unitNumber=integer("The drive's unit number on its controller."),
)


def _controllers(desc: str, max_bus: int, max_items: int, **extra: JSON) -> JSON:
    return arr(obj(desc, required=("busNumber",),
                   busNumber=integer("The controller's bus number.", minimum=0, maximum=max_bus),
                   **extra),
               desc, map_keys=("busNumber",), max_items=max_items)


HARDWARE = obj(
    "Virtual hardware beyond what the VM class gives.",
    cdrom=arr(_CDROM, "CD-ROM drives.", map_keys=("name",)),
    ideControllers=_controllers("IDE controllers.", 1, 2),
    nvmeControllers=_controllers(
        "NVMe controllers.", 3, 4,
        sharingMode=string("Bus sharing.", enum=("None", "Physical"), default="None")),
    sataControllers=_controllers("SATA controllers.", 3, 4),
    scsiControllers=_controllers(
        "SCSI controllers.", 3, 4,
        sharingMode=string("Bus sharing.", enum=("None", "Physical", "Virtual"), default="None"),
        type=string("The controller model.", default="ParaVirtual",
                    enum=("ParaVirtual", "BusLogic", "LsiLogic", "LsiLogicSAS"))),
)

_VMXNET3 = obj(
    "Tuning of a VMXNet3 adapter (accepted for compatibility).",
    coalescingParams=string("Interrupt coalescing parameters."),
    coalescingScheme=string("Interrupt coalescing scheme."),
    ctxPerDev=string("Transmit contexts per device.", max_length=50),
    pnicFeatures=arr(string(max_length=50), "Physical NIC features to use.", list_type="set",
                     max_items=16),
    rssOffloadEnabled=boolean("Receive-side scaling offload."),
    udpRssEnabled=boolean("Receive-side scaling for UDP."),
    uptv2Enabled=boolean("Uniform passthrough v2."),
)

_INTERFACE = obj(
    "One network interface of the VM.",
    required=("name",),
    addresses=arr(string(), "Static IP addresses with prefix length (CIDR), IPv4 or IPv6."),
    advancedProperties=key_values("Driver-specific properties."),
    dhcp4=boolean("Get an IPv4 address by DHCP."),
    dhcp6=boolean("Get an IPv6 address by DHCP."),
    gateway4=string("The IPv4 default gateway, or None for no gateway."),
    gateway6=string("The IPv6 default gateway, or None for no gateway."),
    guestDeviceName=string("The interface's name in the guest.", pattern=r"^\w\w+$"),
    ipamModes=arr(string(), "Address families given by the network's IPAM (IPv4, IPv6).",
                  list_type="set", max_items=2),
    macAddr=string("A fixed MAC address.", pattern=r"^([0-9A-Fa-f]{2}:){5}([0-9A-Fa-f]{2})$"),
    mtu=integer("The MTU in the guest.", fmt="int64"),
    name=string("The interface's name, unique in the VM.", pattern=_DEVICE_NAME),
    nameservers=arr(string(), "DNS servers for this interface."),
    network=typed_ref("The network to attach to; the namespace's default network if omitted.",
                      required=("name",)),
    routes=arr(obj("A static route.", required=("to", "via"),
                   metric=integer("The route's metric.", minimum=1),
                   to=string("The destination CIDR, or default."),
                   via=string("The next hop.")), "Static routes."),
    searchDomains=arr(string(), "DNS search domains for this interface."),
    type=string("The virtual adapter model.",
                enum=("VMXNet3", "SRIOV", "E1000", "E1000e", "VMXNet2", "PCNet32")),
    vmxnet3=_VMXNET3,
    vnumaNodeID=integer("The virtual NUMA node of the adapter.", minimum=0),
)

NETWORK = obj(
    "The VM's network: host name, DNS and interfaces.",
    disabled=boolean("Give the VM no network interfaces."),
    domainName=string("The guest's DNS domain name."),
    hostName=string("The guest's host name; the VM's name if omitted."),
    interfaces=arr(_INTERFACE, "Network interfaces; one on the default network if omitted.",
                   map_keys=("name",), max_items=10),
    nameservers=arr(string(), "Global DNS servers."),
    searchDomains=arr(string(), "Global DNS search domains."),
    vlans=arr(obj("A VLAN interface in the guest.", required=("id", "link", "name"),
                  id=integer("The VLAN id.", fmt="int64", minimum=0, maximum=4094),
                  link=string("The interface the VLAN sits on."),
                  name=string("The VLAN interface's name.", min_length=1, max_length=15,
                              pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")),
              "VLAN interfaces.", map_keys=("name",)),
)

READINESS = obj(
    "How to tell that the guest is ready; sets the Ready condition.",
    guestHeartbeat=obj("Ready when the guest tools' heartbeat is at least this status.",
                       thresholdStatus=string("The lowest heartbeat status that counts as ready.",
                                              enum=("yellow", "green"), default="green")),
    guestInfo=arr(obj("A guest info key, and optionally its expected value (a regular "
                      "expression).", required=("key",), key=string("The key."),
                      value=string("The value to match.")),
                  "Ready when these guest info keys are present."),
    periodSeconds=integer("How often to probe, in seconds.", minimum=1),
    tcpSocket=obj("Ready when a TCP connection to this port succeeds.", required=("port",),
                  host=string("The address to connect to; the VM's primary IP if omitted."),
                  port=int_or_string("The port number or name.")),
    timeoutSeconds=integer("How long one probe may take, in seconds.", minimum=1, maximum=60),
)

_PVC = obj(
    "A PersistentVolumeClaim attached to the VM as a disk.",
    required=("claimName",),
    claimName=string("The name of a PersistentVolumeClaim in the VM's namespace."),
    instanceVolumeClaim=obj("Set for instance storage volumes the class adds.",
                            required=("size", "storageClass"),
                            size=quantity("The volume's size."),
                            storageClass=string("The volume's storage class.")),
    readOnly=boolean("Attach the volume read-only."),
)

VOLUME = obj(
    "A volume attached to the VM.",
    required=("name",),
    applicationType=string("Set disk options for a clustered application.",
                           enum=("OracleRAC", "MicrosoftWSFC")),
    controllerBusNumber=integer("The bus number of the controller to attach to."),
    controllerType=string("The type of the controller to attach to.", enum=CONTROLLER_TYPES),
    diskMode=string("How snapshots treat the disk.", enum=(
        "IndependentNonPersistent", "IndependentPersistent", "NonPersistent", "Persistent")),
    name=string("The volume's name, unique in the VM."),
    persistentVolumeClaim=_PVC,
    removable=boolean("The volume may be detached while the VM runs.", default=True),
    sharingMode=string("Whether several VMs may write the disk.",
                       enum=("MultiWriter", "None")),
    unitNumber=integer("The unit number on its controller."),
)

ADVANCED = obj(
    "Advanced settings.",
    bootDiskCapacity=quantity("The size of the boot disk; grows the image's disk if larger."),
    changeBlockTracking=boolean("Track changed disk blocks (for incremental backups)."),
    cpuAffinityExclusiveNoStatsEnabled=boolean("Exclusive CPU affinity without statistics."),
    defaultVolumeProvisioningMode=string("How new disks are provisioned.",
                                         enum=("Thin", "Thick", "ThickEagerZero")),
    extraConfig=key_values("Extra hypervisor configuration keys."),
    hugePages1GEnabled=boolean("Back guest memory with 1 GiB huge pages."),
    pnumaNodeAffinity=arr(integer(), "Host NUMA nodes the VM may run on."),
    preferHtEnabled=boolean("Prefer hyperthreads for the VM's vCPUs."),
    timeTrackerLowLatencyEnabled=boolean("Low-latency time tracking."),
    vmxSwapEnabled=boolean("Allow swapping the hypervisor process's overhead memory."),
)

_BOOT_OPTIONS = obj(
    "Firmware and boot settings.",
    bootDelay=string("Delay before booting, as a duration (e.g. 5s)."),
    bootOrder=arr(obj("A boot device.", required=("type",),
                      name=string("The device's name (a volume, CD-ROM or interface)."),
                      type=string("The device type.", enum=("Disk", "Network", "CDRom"))),
                  "Boot devices in order."),
    bootRetry=string("Retry booting when no device boots: Enabled or Disabled.",
                     default="Disabled"),
    bootRetryDelay=string("Delay before a boot retry, as a duration."),
    efiSecureBoot=string("UEFI secure boot.", enum=("Enabled", "Disabled"), default="Disabled"),
    firmware=string("The firmware: bios or efi.", enum=("bios", "efi")),
    networkBootProtocol=string("The network boot protocol.", enum=("IP4", "IP6"),
                               default="IP4"),
)

_CPU_ADVANCED = obj(
    "Advanced CPU settings.",
    hotAddEnabled=boolean("Allow adding vCPUs while the VM runs."),
    iommuEnabled=boolean("Expose a virtual IOMMU."),
    latencySensitivity=string("The latency sensitivity.",
                              enum=("Normal", "High", "HighWithHyperthreading")),
    nestedHardwareVirtualizationEnabled=boolean("Expose hardware virtualization to the guest."),
    performanceCountersEnabled=boolean("Expose CPU performance counters to the guest."),
    topology=obj("The virtual CPU topology.",
                 coresPerSocket=integer("Cores per socket.", minimum=0),
                 vnumaNodeCount=integer("Virtual NUMA nodes.", minimum=0)),
)

SPEC = obj(
    "The desired state of a VirtualMachine.",
    advanced=ADVANCED,
    affinity=obj("Placement relative to other VMs.",
                 vmAffinity=_affinity_terms("Place near the matching VMs."),
                 vmAntiAffinity=_affinity_terms("Place away from the matching VMs.")),
    biosUUID=string("The BIOS UUID the guest sees (SMBIOS); generated if omitted.", fmt="uuid"),
    bootOptions=_BOOT_OPTIONS,
    bootstrap=BOOTSTRAP,
    **{"class": typed_ref("A reference to the VirtualMachineClassInstance the VM uses.")},
    className=string("The name of the VirtualMachineClass giving the VM's CPUs and memory; "
                     "a change applies at the VM's next restart."),
    cpuAdvanced=_CPU_ADVANCED,
    crypto=obj("Encryption of the VM.",
               encryptionClassName=string("The EncryptionClass to use."),
               useDefaultKeyProvider=boolean("Use the default key provider if no class is "
                                             "named.", default=True),
               vTPMMode=string("How a vTPM is handled on clone.", enum=("Clone", "New"),
                               default="New")),
    currentSnapshotName=string("The VirtualMachineSnapshot to revert the VM to."),
    groupName=string("The VirtualMachineGroup the VM belongs to."),
    guestID=string("The guest operating system identifier."),
    hardware=HARDWARE,
    image=local_ref("The image the VM is created from: a VirtualMachineImage or "
                    "ClusterVirtualMachineImage."),
    imageName=string("The name of the image the VM is created from (a VirtualMachineImage in "
                     "the namespace, else a ClusterVirtualMachineImage)."),
    instanceUUID=string("The VM's instance UUID; generated if omitted.", fmt="uuid"),
    memoryAdvanced=obj("Advanced memory settings.",
                       hotAddEnabled=boolean("Allow adding memory while the VM runs."),
                       reservationLockedToMax=boolean("Reserve all of the VM's memory.")),
    minHardwareVersion=integer("The lowest virtual hardware version the VM may have.",
                               minimum=13),
    network=NETWORK,
    nextRestartTime=string('Set to "now" to restart the VM; the server records the time.'),
    policies=arr(typed_ref("A policy object."), "Policies applied to the VM."),
    powerOffMode=string("How to power off: Hard (at once), Soft (ACPI shutdown) or TrySoft "
                        "(Soft, then Hard after a timeout).", enum=POWER_OP_MODES,
                        default="TrySoft"),
    powerState=string("The desired power state. Defaults to PoweredOn.", enum=POWER_STATES),
    promoteDisksMode=string("When linked-clone disks are made full copies.",
                            enum=("Online", "Offline", "Disabled"), default="Online"),
    readinessProbe=READINESS,
    reserved=obj("Settings for VMs created from reserved profiles.",
                 resourcePolicyName=string("The VirtualMachineSetResourcePolicy to use.")),
    resources=obj("CPU and memory of the VM beyond its class.",
                  limits=cpu_memory("Upper bounds."),
                  requests=cpu_memory("Reservations."),
                  size=cpu_memory("The VM's size: vCPUs and memory.")),
    restartMode=string("How to restart: Hard, Soft or TrySoft.", enum=POWER_OP_MODES,
                       default="TrySoft"),
    storageClass=string("The StorageClass of the VM's disks."),
    suspendMode=string("How to suspend: Hard, Soft or TrySoft.", enum=POWER_OP_MODES,
                       default="TrySoft"),
    volumeAttributesClassName=string("The VolumeAttributesClass of the VM's disks."),
    volumes=arr(VOLUME, "Volumes attached to the VM.", map_keys=("name",)),
)
