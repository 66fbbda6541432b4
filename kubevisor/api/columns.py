"""The Table columns of each built-in kind, as kube-apiserver's printers define them.

Pure data and small functions of an object: READY/STATUS/RESTARTS of a
Pod, a Deployment's replica counts, a Service's ports, and so on, in
kubectl's order and wording (see ``api.printers`` for the column contract).
Looked up through ``printers.columns_for`` by ``api.builtin``.
"""

from __future__ import annotations

from typing import Any

from kubevisor.api.kinds import JSON, PrinterColumn
from kubevisor.api.printers import (
    BUILTIN_AGE,
    CREATED_AT,
    NAME,
    format_selector,
    human_duration,
    parse_time,
    since,
)

_AGE = BUILTIN_AGE
_CREATED_AT = CREATED_AT


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _spec(obj: JSON) -> JSON:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _status(obj: JSON) -> JSON:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


# ---------------------------------------------------------------------------
# Helpers shared by the built-in columns


def _col(name: str, func: Any, *, type: str = "string", priority: int = 0,
         description: str = "") -> PrinterColumn:
    return PrinterColumn(name=name, type=type, priority=priority, description=description,
                         func=func)


def _or_none(value: Any) -> Any:
    return value if value not in (None, "", []) else "<none>"


def _template_containers(obj: JSON) -> list[JSON]:
    tspec = ((_spec(obj).get("template") or {}).get("spec")) or {}
    return [c for c in tspec.get("containers") or () if isinstance(c, dict)]


_CONTAINERS = _col("Containers", lambda o: ",".join(c.get("name", "")
                                                    for c in _template_containers(o)),
                   priority=1, description="Names of each container in the template.")
_IMAGES = _col("Images", lambda o: ",".join(c.get("image", "") for c in _template_containers(o)),
               priority=1, description="Images referenced by each container in the template.")
_SELECTOR = _col("Selector", lambda o: format_selector(_spec(o).get("selector")), priority=1,
                 description="Label selector for pods.")


# ---------------------------------------------------------------------------
# Pods


def _pod_status(pod: JSON) -> str:
    status = _status(pod)
    reason = status.get("reason") or status.get("phase") or "Pending"
    spec = _spec(pod)
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    n_init = len(spec.get("initContainers") or ())
    for i, cs in enumerate(init_statuses):
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        if state.get("running") and cs.get("started"):
            continue  # a started sidecar
        if term:
            if term.get("reason"):
                reason = "Init:" + term["reason"]
            elif term.get("signal"):
                reason = f"Init:Signal:{term['signal']}"
            else:
                reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            wait, term = state.get("waiting"), state.get("terminated")
            if wait and wait.get("reason"):
                reason = wait["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = f"Signal:{term['signal']}" if term.get("signal") else \
                    f"ExitCode:{term.get('exitCode', 0)}"
            elif state.get("running") and cs.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in status.get("conditions") or ())
            reason = "Running" if ready else "NotReady"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def _pod_ready(pod: JSON) -> str:
    spec, status = _spec(pod), _status(pod)
    total = len(spec.get("containers") or ())
    sidecars = {c.get("name") for c in spec.get("initContainers") or ()
                if isinstance(c, dict) and c.get("restartPolicy") == "Always"}
    total += len(sidecars)
    ready = sum(1 for cs in status.get("containerStatuses") or () if cs.get("ready"))
    ready += sum(1 for cs in status.get("initContainerStatuses") or ()
                 if cs.get("name") in sidecars and cs.get("ready"))
    return f"{ready}/{total}"


def _pod_restarts(pod: JSON) -> Any:
    status = _status(pod)
    restarts = 0
    last: str | None = None
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        finished = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and (last is None or finished > last):
            last = finished
    if restarts and last:
        return f"{restarts} ({since(last)} ago)"
    return str(restarts)


def _readiness_gates(pod: JSON) -> str:
    gates = _spec(pod).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = {c.get("type"): c.get("status") for c in _status(pod).get("conditions") or ()}
    ready = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{ready}/{len(gates)}"


_POD = (
    NAME,
    _col("Ready", _pod_ready, description="The aggregate readiness state of this pod for "
         "accepting traffic."),
    _col("Status", _pod_status, description="The aggregate status of the containers in this "
         "pod."),
    _col("Restarts", _pod_restarts, description="The number of times the containers in this "
         "pod have been restarted and when the last container in this pod has restarted."),
    _AGE,
    _col("IP", lambda o: _or_none(_status(o).get("podIP")), priority=1,
         description="IP address allocated to the pod. Routable at least within the cluster."),
    _col("Node", lambda o: _or_none(_spec(o).get("nodeName")), priority=1,
         description="NodeName is a request to schedule this pod onto a specific node."),
    _col("Nominated Node", lambda o: _or_none(_status(o).get("nominatedNodeName")), priority=1,
         description="nominatedNodeName is set only when this pod preempts other pods on the "
         "node."),
    _col("Readiness Gates", _readiness_gates, priority=1,
         description="If specified, all readiness gates will be evaluated for pod readiness."),
)


# ---------------------------------------------------------------------------
# Workloads


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


_DEPLOYMENT = (
    NAME,
    _col("Ready", lambda o: f"{_int(_status(o).get('readyReplicas'))}/"
         f"{_int(_spec(o).get('replicas', 1))}", description="Number of the pod with ready "
         "state"),
    _col("Up-to-date", lambda o: _int(_status(o).get("updatedReplicas")), type="integer",
         description="Total number of non-terminated pods targeted by this deployment that "
         "have the desired template spec."),
    _col("Available", lambda o: _int(_status(o).get("availableReplicas")), type="integer",
         description="Total number of available pods (ready for at least minReadySeconds) "
         "targeted by this deployment."),
    _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
)

_REPLICASET = (
    NAME,
    _col("Desired", lambda o: _int(_spec(o).get("replicas", 1)), type="integer",
         description="Replicas is the number of desired replicas."),
    _col("Current", lambda o: _int(_status(o).get("replicas")), type="integer",
         description="Replicas is the most recently observed number of replicas."),
    _col("Ready", lambda o: _int(_status(o).get("readyReplicas")), type="integer",
         description="The number of ready replicas for this replica set."),
    _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
)

_STATEFULSET = (
    NAME,
    _col("Ready", lambda o: f"{_int(_status(o).get('readyReplicas'))}/"
         f"{_int(_spec(o).get('replicas', 1))}", description="Number of the pod with ready "
         "state"),
    _AGE, _CONTAINERS, _IMAGES,
)

_DAEMONSET = (
    NAME,
    _col("Desired", lambda o: _int(_status(o).get("desiredNumberScheduled")), type="integer",
         description="The total number of nodes that should be running the daemon pod."),
    _col("Current", lambda o: _int(_status(o).get("currentNumberScheduled")), type="integer",
         description="The number of nodes that are running at least 1 daemon pod."),
    _col("Ready", lambda o: _int(_status(o).get("numberReady")), type="integer",
         description="The number of nodes that should be running the daemon pod and have one "
         "or more of the daemon pod running and ready."),
    _col("Up-to-date", lambda o: _int(_status(o).get("updatedNumberScheduled")), type="integer",
         description="The total number of nodes that are running updated daemon pod"),
    _col("Available", lambda o: _int(_status(o).get("numberAvailable")), type="integer",
         description="The number of nodes that should be running the daemon pod and have one "
         "or more of the daemon pod running and available."),
    _col("Node Selector", lambda o: format_selector(
        ((_spec(o).get("template") or {}).get("spec") or {}).get("nodeSelector")),
         description="NodeSelector is a selector which must be true for the pod to fit on a "
         "node."),
    _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
)


# ---------------------------------------------------------------------------
# Services and networking


def _service_external_ip(svc: JSON) -> str:
    spec = _spec(svc)
    typ = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if typ == "ExternalName":
        return str(spec.get("externalName") or "<none>")
    if typ == "LoadBalancer":
        ingress = ((_status(svc).get("loadBalancer") or {}).get("ingress")) or []
        ips = [i.get("ip") or i.get("hostname") for i in ingress if isinstance(i, dict)]
        ips = [ip for ip in ips if ip] + external
        return ",".join(ips) if ips else "<pending>"
    return ",".join(external) if external else "<none>"


def _service_ports(svc: JSON) -> str:
    parts = []
    for port in _spec(svc).get("ports") or ():
        if not isinstance(port, dict):
            continue
        text = str(port.get("port", ""))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol') or 'TCP'}")
    return ",".join(parts) if parts else "<none>"


_SERVICE = (
    NAME,
    _col("Type", lambda o: _spec(o).get("type") or "ClusterIP",
         description="type determines how the Service is exposed."),
    _col("Cluster-IP", lambda o: _or_none(_spec(o).get("clusterIP")),
         description="clusterIP is the IP address of the service and is usually assigned "
         "randomly."),
    _col("External-IP", _service_external_ip, description="externalIPs is a list of IP "
         "addresses for which nodes in the cluster will also accept traffic for this service."),
    _col("Port(s)", _service_ports, description="The list of ports that are exposed by this "
         "service."),
    _AGE,
    _col("Selector", lambda o: format_selector(_spec(o).get("selector")), priority=1,
         description="Route service traffic to pods with label keys and values matching this "
         "selector."),
)


def _endpoints(obj: JSON) -> str:
    addrs: list[str] = []
    for subset in obj.get("subsets") or ():
        ports = [p.get("port") for p in subset.get("ports") or () if isinstance(p, dict)]
        for address in subset.get("addresses") or ():
            ip = address.get("ip", "")
            if ports:
                addrs.extend(f"{ip}:{p}" for p in ports)
            else:
                addrs.append(ip)
    if not addrs:
        return "<none>"
    shown = ",".join(addrs[:3])
    return shown + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")


_ENDPOINTS = (
    NAME,
    _col("Endpoints", _endpoints, description="Endpoints of the service"),
    _AGE,
)


def _more(items: list[str], count: int, limit: int = 3) -> str:
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _slice_ports(obj: JSON) -> str:
    ports = [p for p in obj.get("ports") or () if isinstance(p, dict)]
    shown = [str(p["port"]) if p.get("port") is not None else p.get("name") or "*"
             for p in ports]
    return _more(shown, len(shown))


def _slice_endpoints(obj: JSON) -> str:
    addrs = [str(a) for e in obj.get("endpoints") or () if isinstance(e, dict)
             for a in e.get("addresses") or ()]
    return _more(addrs, len(addrs))


_ENDPOINTSLICE = (
    NAME,
    _col("AddressType", lambda o: o.get("addressType", ""),
         description="Type of address carried by this EndpointSlice."),
    _col("Ports", _slice_ports, description="Port numbers of the EndpointSlice."),
    _col("Endpoints", _slice_endpoints, description="Addresses of the endpoints."),
    _AGE,
)


# ---------------------------------------------------------------------------
# Cluster objects


def _node_status(node: JSON) -> str:
    conditions = {c.get("type"): c.get("status") for c in _status(node).get("conditions") or ()}
    ready = conditions.get("Ready")
    text = "Ready" if ready == "True" else "NotReady" if ready == "False" else "Unknown"
    if _spec(node).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_roles(node: JSON) -> str:
    roles = set()
    for key, value in (_meta(node).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) if roles else "<none>"


def _node_address(kind: str) -> Any:
    def get(node: JSON) -> str:
        for address in _status(node).get("addresses") or ():
            if address.get("type") == kind:
                return str(address.get("address"))
        return "<none>"

    return get


def _node_info(key: str) -> Any:
    return lambda o: (_status(o).get("nodeInfo") or {}).get(key) or "<unknown>"


_NODE = (
    NAME,
    _col("Status", _node_status, description="The status of the node"),
    _col("Roles", _node_roles, description="The roles of the node"),
    _AGE,
    _col("Version", lambda o: (_status(o).get("nodeInfo") or {}).get("kubeletVersion", ""),
         description="Kubelet Version reported by the node."),
    _col("Internal-IP", _node_address("InternalIP"), priority=1,
         description="List of addresses reachable to the node."),
    _col("External-IP", _node_address("ExternalIP"), priority=1,
         description="List of addresses reachable to the node."),
    _col("OS-Image", _node_info("osImage"), priority=1,
         description="OS Image reported by the node from /etc/os-release."),
    _col("Kernel-Version", _node_info("kernelVersion"), priority=1,
         description="Kernel Version reported by the node from 'uname -r'."),
    _col("Container-Runtime", _node_info("containerRuntimeVersion"), priority=1,
         description="Container runtime version reported by the node."),
)

_NAMESPACE = (
    NAME,
    _col("Status", lambda o: _status(o).get("phase", ""),
         description="The status of the namespace"),
    _AGE,
)

_CONFIGMAP = (
    NAME,
    _col("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
         type="integer", description="Data contains the configuration data."),
    _AGE,
)

_SECRET = (
    NAME,
    _col("Type", lambda o: o.get("type", ""), description="Used to facilitate programmatic "
         "handling of secret data."),
    _col("Data", lambda o: len(o.get("data") or {}), type="integer",
         description="Data contains the secret data."),
    _AGE,
)

_SERVICEACCOUNT = (
    NAME,
    _col("Secrets", lambda o: len(o.get("secrets") or ()), type="integer",
         description="Secrets is a list of the secrets in the same namespace that pods running "
         "using this ServiceAccount are allowed to use."),
    _AGE,
)


def _event_last_seen(ev: JSON) -> Any:
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or \
        _meta(ev).get("creationTimestamp")
    series = ev.get("series")
    if isinstance(series, dict) and series.get("lastObservedTime"):
        first = ev.get("eventTime") or ev.get("firstTimestamp")
        return (f"{since(series['lastObservedTime'])} (x{series.get('count', 1)} over "
                f"{_span(first, series['lastObservedTime'])})")
    count = ev.get("count")
    if isinstance(count, int) and count > 1 and ev.get("firstTimestamp"):
        return f"{since(last)} (x{count} over {_span(ev['firstTimestamp'], last)})"
    return since(last)


def _span(first: Any, last: Any) -> str:
    a, b = parse_time(first), parse_time(last)
    if a is None or b is None:
        return "<unknown>"
    return human_duration((b - a).total_seconds())


def _event_object(ev: JSON) -> str:
    ref = ev.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _event_source(ev: JSON) -> str:
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    return f"{component}, {host}" if host else str(component)


_EVENT = (
    _col("Last Seen", _event_last_seen, description="The time at which the most recent "
         "occurrence of this event was recorded."),
    _col("Type", lambda o: o.get("type", ""), description="Type of this event (Normal, "
         "Warning), new types could be added in the future"),
    _col("Reason", lambda o: o.get("reason", ""), description="This should be a short, machine "
         "understandable string that gives the reason for the transition into the object's "
         "current status."),
    _col("Object", _event_object, description="The object that this event is about."),
    _col("Subobject", lambda o: (o.get("involvedObject") or {}).get("fieldPath", ""),
         priority=1, description="The sub-object this event is about."),
    _col("Source", _event_source, priority=1, description="The component reporting this "
         "event."),
    _col("Message", lambda o: o.get("message", ""), description="A human-readable description "
         "of the status of this operation."),
    _col("First Seen", lambda o: since(o.get("firstTimestamp") or o.get("eventTime")),
         priority=1, description="The time at which the event was first recorded."),
    _col("Count", lambda o: _int(o.get("count")), type="integer", priority=1,
         description="The number of times this event has occurred."),
    _col("Name", lambda o: _meta(o).get("name", ""), priority=1,
         description="Name must be unique within a namespace."),
)


def _quota(section: str) -> Any:
    def render(quota: JSON) -> str:
        hard = _status(quota).get("hard") or _spec(quota).get("hard") or {}
        used = _status(quota).get("used") or {}
        keys = sorted(k for k in hard if (k.startswith("limits.") if section == "limit"
                                          else not k.startswith("limits.")))
        return ", ".join(f"{k}: {used.get(k, '0')}/{hard[k]}" for k in keys)

    return render


_RESOURCEQUOTA = (
    NAME, _AGE,
    _col("Request", _quota("request"), description="Request represents a minimum amount of "
         "cpu/memory that a container may consume."),
    _col("Limit", _quota("limit"), description="Limits control the maximum amount of "
         "cpu/memory that a container may use independent of contention on the node."),
)


def _storage(obj: JSON, where: str) -> str:
    root = _status(obj) if where == "status" else _spec(obj)
    return str((root.get("capacity") or {}).get("storage", ""))


_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
          "ReadWriteOncePod": "RWOP"}


def _access_modes(obj: JSON) -> str:
    modes = _spec(obj).get("accessModes") or []
    return ",".join(_MODES.get(m, m) for m in modes)


def _claim(pv: JSON) -> str:
    ref = _spec(pv).get("claimRef") or {}
    return f"{ref.get('namespace')}/{ref.get('name')}" if ref.get("name") else ""


def _storage_class_of(obj: JSON) -> str:
    return str(_spec(obj).get("storageClassName") or "")


def _vac(obj: JSON) -> str:
    return str(_spec(obj).get("volumeAttributesClassName") or "<unset>")


_PERSISTENTVOLUME = (
    NAME,
    _col("Capacity", lambda o: _storage(o, "spec"), description="capacity is the description of "
         "the persistent volume's resources and capacity."),
    _col("Access Modes", _access_modes, description="accessModes contains all ways the volume "
         "can be mounted."),
    _col("Reclaim Policy", lambda o: _spec(o).get("persistentVolumeReclaimPolicy", ""),
         description="persistentVolumeReclaimPolicy defines what happens to a persistent volume "
         "when released from its claim."),
    _col("Status", lambda o: _status(o).get("phase", ""), description="phase indicates if a "
         "volume is available, bound to a claim, or released by a claim."),
    _col("Claim", _claim, description="claimRef is part of a bi-directional binding between "
         "PersistentVolume and PersistentVolumeClaim."),
    _col("StorageClass", _storage_class_of, description="storageClassName is the name of "
         "StorageClass to which this persistent volume belongs."),
    _col("VolumeAttributesClass", _vac, description="Name of VolumeAttributesClass to which "
         "this persistent volume belongs."),
    _col("Reason", lambda o: _status(o).get("reason", ""), description="reason is a brief "
         "CamelCase string that describes any failure."),
    _AGE,
    _col("VolumeMode", lambda o: _spec(o).get("volumeMode", ""), priority=1,
         description="volumeMode defines if a volume is intended to be used with a formatted "
         "filesystem or to remain in raw block state."),
)

_PERSISTENTVOLUMECLAIM = (
    NAME,
    _col("Status", lambda o: _status(o).get("phase", ""), description="phase represents the "
         "current phase of PersistentVolumeClaim."),
    _col("Volume", lambda o: _spec(o).get("volumeName", ""), description="volumeName is the "
         "binding reference to the PersistentVolume backing this claim."),
    _col("Capacity", lambda o: _storage(o, "status"), description="capacity represents the "
         "actual resources of the underlying volume."),
    _col("Access Modes", lambda o: ",".join(_MODES.get(m, m) for m in
                                            _status(o).get("accessModes") or []),
         description="accessModes contains the desired access modes the volume should have."),
    _col("StorageClass", _storage_class_of, description="storageClassName is the name of the "
         "StorageClass required by the claim."),
    _col("VolumeAttributesClass", _vac, description="volumeAttributesClassName may be used to "
         "set the VolumeAttributesClass used by this claim."),
    _AGE,
    _col("VolumeMode", lambda o: _spec(o).get("volumeMode", ""), priority=1,
         description="volumeMode defines what type of volume is required by the claim."),
)

_LIMITRANGE = (NAME, _CREATED_AT)

_LEASE = (
    NAME,
    _col("Holder", lambda o: _spec(o).get("holderIdentity", ""), description="HolderIdentity "
         "contains the identity of the holder of a current lease."),
    _AGE,
)


def _subjects(kind: str) -> Any:
    def render(binding: JSON) -> str:
        names = []
        for s in binding.get("subjects") or ():
            if s.get("kind") != kind:
                continue
            names.append(f"{s.get('namespace', '')}/{s.get('name')}" if kind == "ServiceAccount"
                         else str(s.get("name")))
        return ", ".join(names)

    return render


def _binding_columns() -> tuple[PrinterColumn, ...]:
    return (
        NAME,
        _col("Role", lambda o: f"{(o.get('roleRef') or {}).get('kind', '')}/"
             f"{(o.get('roleRef') or {}).get('name', '')}",
             description="RoleRef can reference a Role in the current namespace or a "
             "ClusterRole in the global namespace."),
        _AGE,
        _col("Users", _subjects("User"), priority=1, description="Users in the roleBinding"),
        _col("Groups", _subjects("Group"), priority=1, description="Groups in the roleBinding"),
        _col("ServiceAccounts", _subjects("ServiceAccount"), priority=1,
             description="ServiceAccounts in the roleBinding"),
    )


_ROLE = (NAME, _CREATED_AT)

_RUNTIMECLASS = (
    NAME,
    _col("Handler", lambda o: o.get("handler", ""), description="handler specifies the "
         "underlying runtime and configuration that the CRI implementation will use."),
    _AGE,
)


def _storage_class_name(sc: JSON) -> str:
    name = str(_meta(sc).get("name", ""))
    annotations = _meta(sc).get("annotations") or {}
    default = annotations.get("storageclass.kubernetes.io/is-default-class") or \
        annotations.get("storageclass.beta.kubernetes.io/is-default-class")
    return f"{name} (default)" if default == "true" else name


_STORAGECLASS = (
    PrinterColumn(name="Name", type="string", format="name", description=NAME.description,
                  func=_storage_class_name),
    _col("Provisioner", lambda o: o.get("provisioner", ""), description="provisioner indicates "
         "the type of the provisioner."),
    _col("ReclaimPolicy", lambda o: o.get("reclaimPolicy") or "Delete",
         description="reclaimPolicy controls the reclaimPolicy for dynamically provisioned "
         "PersistentVolumes of this storage class."),
    _col("VolumeBindingMode", lambda o: o.get("volumeBindingMode") or "Immediate",
         description="volumeBindingMode indicates how PersistentVolumeClaims should be "
         "provisioned and bound."),
    _col("AllowVolumeExpansion", lambda o: bool(o.get("allowVolumeExpansion")),
         type="boolean", description="allowVolumeExpansion shows whether the storage class "
         "allow volume expand."),
    _AGE,
)

_CRD = (NAME, _CREATED_AT)


def _has_condition(obj: JSON, type_: str) -> bool:
    return any(isinstance(c, dict) and c.get("type") == type_ and c.get("status") == "True"
               for c in _status(obj).get("conditions") or ())


def _job_status(job: JSON) -> str:
    if _has_condition(job, "Complete"):
        return "Complete"
    if _has_condition(job, "Failed"):
        return "Failed"
    if _meta(job).get("deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _has_condition(job, kind):
            return kind
    return "Running"


def _job_completions(job: JSON) -> str:
    succeeded = _int(_status(job).get("succeeded"))
    completions = _spec(job).get("completions")
    if completions is not None:
        return f"{succeeded}/{_int(completions)}"
    parallelism = _int(_spec(job).get("parallelism"))
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: JSON) -> str:
    start = parse_time(_status(job).get("startTime"))
    if start is None:
        return ""
    end = parse_time(_status(job).get("completionTime"))
    if end is None:
        return since(_status(job).get("startTime"))
    return human_duration((end - start).total_seconds())


_JOB = (
    NAME,
    _col("Status", _job_status, description="Status of the job."),
    _col("Completions", _job_completions, description="The desired number of successfully "
         "finished pods the job should be run with."),
    _col("Duration", _job_duration, description="Time required to complete the job."),
    _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
)


def _revision_controller(rev: JSON) -> str:
    for ref in _meta(rev).get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller"):
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            kind = str(ref.get("kind", "")).lower()
            return f"{kind}.{group}/{ref.get('name', '')}" if group else \
                f"{kind}/{ref.get('name', '')}"
    return "<none>"


_CONTROLLERREVISION = (
    NAME,
    _col("Controller", _revision_controller, description="Controller of the object."),
    _col("Revision", lambda o: _int(o.get("revision")), type="integer",
         description="Revision indicates the revision of the state represented by Data."),
    _AGE,
)


def _csr_condition(obj: JSON) -> str:
    types = [str(c.get("type")) for c in (obj.get("status") or {}).get("conditions") or ()
             if isinstance(c, dict) and c.get("type")]
    return ",".join(types) if types else "Pending"


def _csr_duration(obj: JSON) -> str:
    seconds = (obj.get("spec") or {}).get("expirationSeconds")
    return human_duration(int(seconds)) if isinstance(seconds, int) else "<none>"


_CSR = (
    NAME,
    _AGE,
    _col("SignerName", lambda o: (o.get("spec") or {}).get("signerName", ""),
         description="Name of the signer that will sign the certificate."),
    _col("Requestor", lambda o: (o.get("spec") or {}).get("username", ""),
         description="The user that created the request."),
    _col("RequestedDuration", _csr_duration,
         description="The requested validity of the issued certificate."),
    _col("Condition", _csr_condition, description="Approval and issuance conditions."),
)


BUILTIN: dict[tuple[str, str], tuple[PrinterColumn, ...]] = {
    ("", "Pod"): _POD,
    ("", "Service"): _SERVICE,
    ("", "Endpoints"): _ENDPOINTS,
    ("", "Node"): _NODE,
    ("", "Namespace"): _NAMESPACE,
    ("", "ConfigMap"): _CONFIGMAP,
    ("", "Secret"): _SECRET,
    ("", "ServiceAccount"): _SERVICEACCOUNT,
    ("", "Event"): _EVENT,
    ("", "ResourceQuota"): _RESOURCEQUOTA,
    ("", "LimitRange"): _LIMITRANGE,
    ("", "PersistentVolume"): _PERSISTENTVOLUME,
    ("", "PersistentVolumeClaim"): _PERSISTENTVOLUMECLAIM,
    ("apps", "Deployment"): _DEPLOYMENT,
    ("apps", "ReplicaSet"): _REPLICASET,
    ("apps", "StatefulSet"): _STATEFULSET,
    ("apps", "DaemonSet"): _DAEMONSET,
    ("apps", "ControllerRevision"): _CONTROLLERREVISION,
    ("batch", "Job"): _JOB,
    ("coordination.k8s.io", "Lease"): _LEASE,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _CRD,
    ("rbac.authorization.k8s.io", "Role"): _ROLE,
    ("rbac.authorization.k8s.io", "ClusterRole"): _ROLE,
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding_columns(),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding_columns(),
    ("node.k8s.io", "RuntimeClass"): _RUNTIMECLASS,
    ("discovery.k8s.io", "EndpointSlice"): _ENDPOINTSLICE,
    ("certificates.k8s.io", "CertificateSigningRequest"): _CSR,
    ("storage.k8s.io", "StorageClass"): _STORAGECLASS,
}


