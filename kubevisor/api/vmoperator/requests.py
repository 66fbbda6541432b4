"""Schemas of the request-like kinds: VirtualMachineWebConsoleRequest (a
short-lived console ticket), VirtualMachinePublishRequest (publish a VM as
an image) and VirtualMachineSetResourcePolicy (grouping of VMs). Called by
``kinds``; kubevisor's console and image features act on the first two.
"""

from __future__ import annotations

import functools

from kubevisor.api.kinds import JSON
from kubevisor.api.vmoperator.common import conditions, cpu_memory
from kubevisor.api.vmoperator.fields import (
    arr,
    boolean,
    integer,
    obj,
    root,
    string,
    time,
    without,
)

VERSIONS = ("v1alpha6", "v1alpha5", "v1alpha4", "v1alpha3")
STORAGE_VERSION = "v1alpha6"

_WEB_CONSOLE = root(
    "VirtualMachineWebConsoleRequest asks for a short-lived ticket to a VM's console.",
    spec=obj("The VM and the client's key.", required=("name", "publicKey"),
             name=string("The name of the VirtualMachine."),
             publicKey=string("A PEM RSA public key; the response is encrypted with it.")),
    status=obj("The ticket.",
               expiryTime=time("When the ticket expires."),
               proxyAddr=string("The address to connect to."),
               response=string("The ticket, encrypted with the public key.")),
)


def _ref(desc: str, api_version: str, kind: str) -> JSON:
    return obj(desc,
               apiVersion=string("The API version.", default=api_version),
               kind=string("The kind.", default=kind),
               name=string("The name."))


def _target(desc: str) -> JSON:
    return obj(desc,
               item=obj("The image to create.", description=string("Its description."),
                        name=string("Its name.")),
               location=_ref("Where to publish.", "imageregistry.vmware.com/v1alpha1",
                             "ContentLibrary"))


_SOURCE = _ref("The VM to publish; the request's name if omitted.",
               "vmoperator.vmware.com/v1alpha1", "VirtualMachine")

_PUBLISH = root(
    "VirtualMachinePublishRequest publishes a VM as an image.",
    spec=obj("What to publish where.",
             backoffLimit=integer("Attempts before giving up.", fmt="int64", minimum=0,
                                  default=3),
             source=_SOURCE,
             target=_target("The image to create."),
             ttlSecondsAfterFinished=integer("Delete the request this long after it finished.",
                                             fmt="int64", minimum=0)),
    status=obj("The progress of the request.",
               attempts=integer("Attempts so far.", fmt="int64"),
               completionTime=time("When it completed."),
               conditions=conditions("The request's conditions."),
               imageName=string("The name of the image created."),
               lastAttemptTime=time("When the last attempt started."),
               ready=boolean("The image is published."),
               sourceRef=_SOURCE,
               startTime=time("When the request was first handled."),
               targetRef=_target("The image created.")),
)


def _pool(desc: str) -> JSON:
    return obj(desc, limits=cpu_memory("Upper bounds."), name=string("The pool's name."),
               reservations=cpu_memory("Reservations."))


_RESOURCE_POLICY = root(
    "VirtualMachineSetResourcePolicy groups VMs into a resource pool, folder and placement "
    "groups.",
    spec=obj("The grouping.",
             clusterModuleGroups=arr(string(), "Anti-affinity groups."),
             folder=string("The folder of the VMs."),
             resourcePool=_pool("The resource pool of the VMs.")),
    status=obj("The observed state.",
               clustermodules=arr(obj("A placement group.",
                                      required=("clusterMoID", "groupName", "moduleUUID"),
                                      clusterMoID=string("The cluster."),
                                      groupName=string("The group's name."),
                                      moduleUUID=string("The group's id.")), "Placement groups."),
               resourcePools=arr(obj("A resource pool.",
                                     required=("childResourcePoolMoID", "clusterMoID"),
                                     childResourcePoolMoID=string("The pool."),
                                     clusterMoID=string("The cluster.")), "Resource pools.")),
)


@functools.cache
def web_console(version: str) -> JSON:
    del version
    return _WEB_CONSOLE


@functools.cache
def publish(version: str) -> JSON:
    return _PUBLISH if version in ("v1alpha6", "v1alpha5") else without(_PUBLISH,
                                                                        "spec.backoffLimit")


@functools.cache
def resource_policy(version: str) -> JSON:
    del version
    return _RESOURCE_POLICY
