"""A real container resolves Service names through the cluster DNS: a
busybox container (runc/crun through the OCI driver) in a pod network
namespace on a test bridge, with the resolv.conf a ClusterFirst pod gets,
runs ``nslookup`` against the server listening on the bridge's gateway
(port 53, as on a node). Out-of-zone names go to a stub upstream on the
host's loopback. Root only; slow."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from pathlib import Path

import pytest

from kubevisor.client import Client
from kubevisor.node.dns import ClusterDNS, gateway_address, resolv_conf
from kubevisor.runtime.types import ContainerSpec, Mount
from tests.node.dns.objects import endpoints, service
from tests.node.dns.stub import stub_upstream
from tests.node.e2e import new_setup, require_drivers
from tests.runtime.oci.conftest import BUSYBOX, build_busybox_rootfs, read_log

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, OCI runtime)"),
              pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static not installed")]


def _port_53_free(address: str) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
            try:
                sock.bind((address, 53))
            except OSError:
                return False
    return True


async def test_busybox_in_a_pod_resolves_services(api: Client, tmp_path: Path) -> None:
    require_drivers()
    setup = new_setup(tmp_path / "host")
    try:
        drivers = await setup.drivers()
        net = await drivers.network.setup_pod("dns-client")
        assert gateway_address(setup.pod_cidr) == net.gateway  # what the agent will bind
        if not _port_53_free(net.gateway):
            pytest.skip(f"{net.gateway}:53 is taken on this host (a wildcard DNS listener?)")
        web = await api.create(service("web", ip=None))
        await api.create(service("db", ip="None", ports=[{"name": "pg", "port": 5432}]))
        await api.create(endpoints("db", [(net.ip, "db-0")],
                                   ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
        async with stub_upstream({"example.org.": "192.0.2.10"}) as stub:
            cluster_dns = ClusterDNS.for_pod_cidr(api, setup.pod_cidr, port=53,
                                                  upstreams=[("127.0.0.1", stub.port)],
                                                  upstream_timeout=2.0)
            task = asyncio.create_task(cluster_dns.run())
            try:
                await asyncio.wait_for(cluster_dns.server.ready.wait(), 15)
                await asyncio.wait_for(cluster_dns.listening.wait(), 15)
                pod = {"metadata": {"name": "client", "namespace": "default"}, "spec": {}}
                conf = tmp_path / "resolv.conf"
                conf.write_text(resolv_conf(pod, nameserver=net.gateway))
                rootfs = build_busybox_rootfs(tmp_path / "rootfs")
                script = ("nslookup -type=a web; echo ==; nslookup -type=a db-0.db.default.svc.cluster.local; echo ==; "
                          "nslookup -type=a example.org; echo ==; cat /etc/resolv.conf")
                spec = ContainerSpec(
                    id=f"dns-{uuid.uuid4().hex[:8]}", rootfs=str(rootfs), args=["sh", "-c", script],
                    log_path=str(tmp_path / "client.log"), netns=net.netns,
                    mounts=[Mount(destination="/etc/resolv.conf", source=str(conf), read_only=True)])
                await drivers.runtime.run(spec)
                for _ in range(300):
                    state = await drivers.runtime.state(spec.id)
                    if state is None or state.status == "stopped":
                        break
                    await asyncio.sleep(0.1)
                with contextlib.suppress(Exception):
                    await drivers.runtime.remove(spec.id)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        output = "\n".join(line for _, line in read_log(spec.log_path))
        parts = output.split("==")
        assert len(parts) == 4, output
        assert web["spec"]["clusterIP"] in parts[0] and "web.default.svc.cluster.local" in parts[0], output
        assert net.ip in parts[1], output
        assert "192.0.2.10" in parts[2], output
        assert f"nameserver {net.gateway}" in parts[3] and "ndots:5" in parts[3]
        assert ("udp", "example.org.", "A") in stub.seen
    finally:
        await setup.cleanup()
