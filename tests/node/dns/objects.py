"""Service and Endpoints objects for the DNS tests (shaped as the apiserver
and the Endpoints controller write them)."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def service(name: str, *, namespace: str = "default", ip: str | None = "10.96.0.10",
            ports: list[JSON] | None = None, type_: str = "ClusterIP",
            external_name: str | None = None) -> JSON:
    spec: JSON = {"type": type_,
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP"}] if ports is None else ports}
    if external_name is not None:
        spec = {"type": "ExternalName", "externalName": external_name}
    elif ip is not None:
        spec["clusterIP"] = ip
        if ip != "None":
            spec["clusterIPs"] = [ip]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpoints(name: str, ready: list[str | tuple[str, str]], *, namespace: str = "default",
              not_ready: list[str] = (), ports: list[JSON] | None = None) -> JSON:
    def address(a: str | tuple[str, str]) -> JSON:
        return {"ip": a} if isinstance(a, str) else {"ip": a[0], "hostname": a[1]}
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace},
            "subsets": [{"addresses": [address(a) for a in ready],
                         "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                         "ports": ports or [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}
