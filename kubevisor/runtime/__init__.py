"""What runs on one host, knowing nothing of Kubernetes objects.

The node agent (:mod:`kubevisor.node`) translates Pods and VirtualMachines
into the plain specs of :mod:`kubevisor.runtime.types` and hands them to the
drivers here: ``oci`` (containers through runc or crun), ``images`` (OCI
image pulls, the content-addressed layer cache, container root filesystems),
``network`` (the node bridge, pod network namespaces, IPAM, the service
proxy), and later ``qemu`` and ``guest``. Nothing here imports anything
above it (import-linter enforces it).
"""
