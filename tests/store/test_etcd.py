"""What only the etcd backend does: fail over between members, for
requests and for watch streams, and report unreachable clusters."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from kubevisor.store.base import Event
from kubevisor.store.errors import UnavailableError
from kubevisor.store.etcd import EtcdStore
from tests.support.etcd import EtcdCluster, running_etcd

pytestmark = pytest.mark.etcd


def dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_unreachable_cluster_is_unavailable() -> None:
    store = EtcdStore([dead_endpoint(), dead_endpoint()], timeout=2)
    with pytest.raises(UnavailableError):
        await store.start()
    await store.close()


async def test_dead_first_endpoint_fails_over(etcd_single: EtcdCluster) -> None:
    store = EtcdStore([dead_endpoint(), *etcd_single])
    await store.start()
    try:
        kv = await store.create("/failover/a", b"x")
        assert await store.get("/failover/a") == kv
    finally:
        await store.close()


def leader_index(cluster: EtcdCluster) -> int:
    """Which member leads, from etcd's status (member_id == leader)."""
    for index, url in enumerate(cluster):
        status = httpx.post(f"{url}/v3/maintenance/status", json={}, timeout=5).json()
        if status["header"]["member_id"] == status["leader"]:
            return index
    raise AssertionError("no leader")


async def write_with_retry(store: EtcdStore, key: str) -> int:
    """Create ``key``, retrying while the cluster elects a leader."""
    for _ in range(100):
        try:
            return (await store.create(key, b"v")).mod_revision
        except UnavailableError:
            if await store.get(key) is not None:  # it did happen after all
                kv = await store.get(key)
                assert kv is not None
                return kv.mod_revision
            await asyncio.sleep(0.1)
    raise AssertionError(f"could not write {key}")


@pytest.mark.slow
async def test_member_loss_keeps_requests_and_watches_going(tmp_path: Path) -> None:
    with running_etcd(tmp_path, members=3) as cluster:
        # the leader is the store's first endpoint: its loss costs an election
        # and moves the store and its watch stream to another member
        leader = leader_index(cluster)
        store = EtcdStore(cluster[leader:] + cluster[:leader])
        await store.start()
        try:
            start = await store.current_revision()
            watcher = store.watch("/ha/", after_revision=start)
            revisions = [await write_with_retry(store, f"/ha/before-{i}") for i in range(5)]
            events: list[Event] = []
            while len(events) < 5:
                events.extend(await asyncio.wait_for(watcher.__anext__(), 10))
            await asyncio.to_thread(cluster.stop_member, leader, kill=True)
            # writes proposed before a new leader is elected time out in etcd
            # itself (~6 s); wait for the election to keep the test short
            await asyncio.to_thread(cluster.wait_healthy)
            revisions += [await write_with_retry(store, f"/ha/after-{i}") for i in range(5)]
            while len(events) < 10:
                events.extend(await asyncio.wait_for(watcher.__anext__(), 20))
            assert [e.revision for e in events] == revisions
            assert (await store.range("/ha/")).count == 10
            await watcher.close()
        finally:
            await store.close()


async def test_many_watchers_do_not_starve_requests(etcd_single: EtcdCluster) -> None:
    store = EtcdStore(list(etcd_single))
    await store.start()
    ns = f"/many-{id(store)}/"
    try:
        start = await store.current_revision()
        watchers = [store.watch(ns, after_revision=start) for _ in range(120)]
        pending = [asyncio.create_task(w.__anext__()) for w in watchers]
        kv = await asyncio.wait_for(store.create(ns + "a", b"x"), 10)
        batches = await asyncio.wait_for(asyncio.gather(*pending), 20)
        assert all([e.kv for e in batch] == [kv] for batch in batches)
        assert await asyncio.wait_for(store.get(ns + "a"), 10) == kv
    finally:
        await store.close()
