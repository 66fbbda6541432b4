"""``kubevisor join`` against a plain ``kubevisor up --no-node``: its own
controller manager (CA paths, node IPAM) and its cluster-info, nothing
run by the test but up and join."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.test_join_e2e import joined
from tests.node.e2e import new_setup, require_drivers
from tests.support.server import running_server, unique


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the node agent needs root")
async def test_join_against_plain_up(tmp_path: Path) -> None:
    require_drivers()
    setup = new_setup(tmp_path / "joined")
    with running_server(tmp_path / "server",
                        extra_args=["--cluster-cidr", setup.pod_cidr]) as server:
        async with joined(server, setup, unique("joined"), tmp_path / "join.log") as result:
            assert result.node["spec"]["podCIDR"] == setup.pod_cidr
            # the apiserver's token for node agents came with the join: streams serve
            token = (setup.data_dir / "pki" / "kubelet-client.token").read_text().strip()
            assert token == (server.data_dir / "pki" / "kubelet-client.token").read_text().strip()
            endpoint = result.node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            assert endpoint not in (0, 10250)
