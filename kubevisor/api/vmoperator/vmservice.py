"""The VirtualMachineService schema: a Service whose endpoints are the VMs
its selector matches (ClusterIP, LoadBalancer, ExternalName). v1alpha6
added ipFamilies, ipFamilyPolicy and status conditions. Called by ``kinds``.
"""

from __future__ import annotations

import functools

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator.common import conditions
from kubevisor.api.vmoperator.fields import arr, integer, obj, root, string, string_map, without

VERSIONS = ("v1alpha6", "v1alpha5", "v1alpha4", "v1alpha3")
STORAGE_VERSION = "v1alpha6"

SPEC = obj(
    "How the service is exposed and which VMs back it.",
    required=("type",),
    clusterIp=string("The service's cluster IP; allocated if empty, None for a headless "
                     "service."),
    externalName=string("The DNS name an ExternalName service points at."),
    ipFamilies=arr(string(), "The IP families of the service (IPv4, IPv6).", list_type="atomic",
                   max_items=2),
    ipFamilyPolicy=string("Single or dual stack.",
                          enum=("SingleStack", "PreferDualStack", "RequireDualStack")),
    loadBalancerIP=string("The load balancer address to ask for."),
    loadBalancerSourceRanges=arr(string(), "Client CIDRs allowed through the load balancer."),
    ports=arr(obj("A port of the service.", required=("name", "port", "protocol", "targetPort"),
                  name=string("The port's name."),
                  port=integer("The port the service listens on."),
                  protocol=string("TCP, UDP or SCTP."),
                  targetPort=integer("The port on the VMs.")),
              "The service's ports."),
    selector=string_map("VMs with these labels back the service."),
    type=string("ClusterIP, LoadBalancer or ExternalName."),
)

STATUS = obj(
    "The observed state of the service.",
    conditions=conditions("The service's conditions."),
    loadBalancer=obj("The load balancer's state.",
                     ingress=arr(obj("An address of the load balancer.",
                                     hostname=string("A DNS name."), ip=string("An IP address.")),
                                 "The load balancer's addresses.")),
)


@functools.cache
def schema(version: str) -> JSON:
    full = root("VirtualMachineService exposes VMs selected by their labels as a Service.",
                spec=SPEC, status=STATUS)
    if version == "v1alpha6":
        return full
    return without(full, "spec.ipFamilies", "spec.ipFamilyPolicy", "status.conditions")
