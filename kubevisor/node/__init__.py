"""The host agent ("spherelet"): one per host.

Registers the host as a Node with a Lease heartbeat, watches the pods (and
later VirtualMachines) bound to it, and runs them through
:mod:`kubevisor.runtime`, reporting status back through the API like any
client. Started by ``kubevisor up`` (unless ``--no-node``) and by
``kubevisor join``.
"""
