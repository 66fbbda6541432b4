"""The QEMU driver with real QEMU and the small test guest (TCG here, KVM
where it works): boot to the readiness line, the NoCloud seed applied
(runcmd, write_files, keys, hostname), TCP answered, soft and hard
power-off, TrySoft falling back, restart with a redefined spec, suspend
to a file and resume, re-adoption by a new driver object, and delete
leaving nothing behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kubevisor.runtime.guest import build_test_disk
from kubevisor.runtime.qemu import Disk, NetworkInterface, QemuDriver, VMCapabilities, VMSpec, qmp
from kubevisor.runtime.qemu import disks as disk_files
from kubevisor.runtime.qemu.errors import VMError, VMStateError
from tests.runtime.qemu.conftest import needs_qemu, qemu_processes
from tests.runtime.qemu.guestvm import (
    CACHE,
    console_run,
    free_port,
    guest_spec,
    http_get,
    make_seed,
    random_mac,
    wait_for_line,
    wait_ready,
)

pytestmark = [needs_qemu, pytest.mark.slow]


def assert_gone(driver: QemuDriver, vm_id: str) -> None:
    assert not (driver.root / vm_id).exists()
    assert qemu_processes(str(driver.root / vm_id)) == []


async def test_boot_seed_tcp_power_off_restart_and_delete(driver: QemuDriver, tmp_path: Path) -> None:
    port = free_port()
    clone = await disk_files.linked_clone(build_test_disk(CACHE), str(tmp_path / "root.qcow2"),
                                          size=128 << 20)
    seed = await make_seed(
        tmp_path / "seed.iso", hostname="vm-boot",
        write_files=[{"path": "/etc/greeting", "content": "hello from write_files\n"}],
        runcmd=["echo RUNCMD-MARKER-$(hostname) > /dev/console", "echo ran > /root/runcmd-file"])
    spec = guest_spec("boot", seed=seed, disks=[Disk(clone.path, boot=True)],
                      interfaces=[NetworkInterface(mac=random_mac(), host_forwards=[(port, 80)])])
    created = await driver.create(spec)
    assert created.status == "shutdown" and created.pid == 0

    started = time.monotonic()
    state = await driver.start("boot")
    assert state.status == "running" and state.pid > 0 and state.accel == driver.capabilities.accel
    hostname, ip = await wait_ready(state.console_log)
    boot_seconds = time.monotonic() - started
    assert (hostname, ip) == ("vm-boot", "10.0.2.15"), boot_seconds
    await wait_for_line(state.console_log, "RUNCMD-MARKER-vm-boot", timeout=1)

    assert await console_run(state.console_socket, "cat /root/runcmd-file") == "ran\n"
    assert await console_run(state.console_socket, "cat /etc/greeting") == "hello from write_files\n"
    keys = await console_run(state.console_socket, "cat /root/.ssh/authorized_keys")
    assert keys.startswith("ssh-ed25519 ")
    disks_seen = await console_run(state.console_socket, "cat /sys/class/block/vda/size")
    assert int(disks_seen) * 512 == 128 << 20  # the linked clone, grown
    assert "vm-boot" in http_get(port)
    assert (await driver.state("boot")).status == "running"  # type: ignore[union-attr]

    # soft power-off: the ACPI power button, the guest powers off, QEMU exits
    off = await driver.power_off("boot", mode="soft", timeout=30)
    assert off.status == "shutdown" and off.pid == 0
    assert qemu_processes(str(driver.root / "boot")) == []
    assert not (driver.root / "boot" / "qmp.sock").exists()

    # redefined while off: the new spec applies at the next start
    await driver.create(VMSpec(**{**_fields(spec), "cpus": 2}))
    log_size = Path(state.console_log).stat().st_size
    state = await driver.start("boot")
    await wait_ready(state.console_log, after=log_size)
    assert (await console_run(state.console_socket, "nproc")).strip() == "2"

    # TrySoft on a guest that ignores the button: Soft gives up, TrySoft goes hard
    await console_run(state.console_socket, "killall acpid")
    with pytest.raises(VMStateError, match="did not power off"):
        await driver.power_off("boot", mode="soft", timeout=2)
    assert (await driver.state("boot")).status == "running"  # type: ignore[union-attr]
    off = await driver.power_off("boot", mode="trysoft", timeout=2)
    assert off.status == "shutdown"

    state = await driver.start("boot")
    off = await driver.power_off("boot", mode="hard")
    assert off.status == "shutdown" and qemu_processes(str(driver.root / "boot")) == []
    assert (await driver.power_off("boot")).status == "shutdown"  # idempotent

    state = await driver.start("boot")
    await driver.delete("boot")
    assert_gone(driver, "boot")
    assert await driver.state("boot") is None
    await driver.delete("boot")  # idempotent
    assert Path(clone.path).exists()  # disks belong to the caller


def _fields(spec: VMSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


async def test_suspend_resume_and_readoption(driver: QemuDriver, tmp_path: Path) -> None:
    seed = await make_seed(tmp_path / "seed.img", hostname="vm-suspend", fmt="vfat",
                           runcmd=["echo before > /root/state"])
    await driver.create(guest_spec("susp", seed=seed, interfaces=[NetworkInterface(mac=random_mac())]))
    state = await driver.start("susp")
    assert (await wait_ready(state.console_log))[0] == "vm-suspend"  # a vfat seed works too
    before = state.pid

    started = time.monotonic()
    suspended = await driver.suspend("susp")
    suspend_seconds = time.monotonic() - started
    assert suspended.status == "suspended" and suspended.pid == 0
    assert Path(suspended.state_file).stat().st_size > 0
    assert qemu_processes(str(driver.root / "susp")) == []
    assert (await driver.suspend("susp")).status == "suspended"  # no-op

    started = time.monotonic()
    resumed = await driver.start("susp")  # start of a suspended VM resumes it
    resume_seconds = time.monotonic() - started
    assert resumed.status == "running" and resumed.pid not in (0, before)
    assert resume_seconds < 5.0, f"resume took {resume_seconds:.2f}s (suspend {suspend_seconds:.2f}s)"
    assert not Path(suspended.state_file).exists()
    # the same guest, alive: its memory (a file in its tmpfs root) survived
    assert await console_run(resumed.console_socket, "cat /root/state; echo RESUMED-OK") == "before\nRESUMED-OK\n"

    # a new driver object (an agent restart) adopts the running VM
    again = QemuDriver(driver.root, capabilities=driver.capabilities)
    listed = await again.list()
    assert [(s.id, s.status, s.pid) for s in listed] == [("susp", "running", resumed.pid)]
    paused = await again.pause("susp")
    assert paused.status == "paused"
    assert (await again.unpause("susp")).status == "running"
    async with qmp.session(resumed.qmp_socket) as session:
        assert [cpu["cpu-index"] for cpu in await session.cpus()] == [0]
    await again.suspend("susp")
    assert (await again.resume("susp")).status == "running"
    # reboot (hard) restarts QEMU from the definition: a fresh boot
    log_size = Path(resumed.console_log).stat().st_size
    rebooted = await again.reboot("susp", mode="hard")
    assert rebooted.status == "running" and rebooted.pid != resumed.pid
    await wait_ready(rebooted.console_log, after=log_size)
    assert await console_run(rebooted.console_socket, "cat /root/state") == "before\n"  # runcmd ran again
    off = await again.power_off("susp", mode="trysoft", timeout=30)
    assert off.status == "shutdown"
    with pytest.raises(VMStateError):
        await again.suspend("susp")
    await again.delete("susp")
    assert_gone(again, "susp")


async def test_a_failed_start_leaves_nothing_running(driver: QemuDriver, tmp_path: Path) -> None:
    spec = guest_spec("broken", disks=[Disk(str(tmp_path / "missing.qcow2"))])
    await driver.create(spec)
    with pytest.raises(VMError, match="failed to start"):
        await driver.start("broken")
    state = await driver.state("broken")
    assert state is not None and state.status == "shutdown"
    leftovers = sorted(p.name for p in (driver.root / "broken").iterdir())
    assert leftovers in (["spec.json"], ["console.log", "spec.json"])  # no pid file, no sockets
    assert qemu_processes(str(driver.root / "broken")) == []


async def test_a_state_dir_too_deep_for_a_unix_socket_path_still_runs(
        tmp_path: Path, capabilities: VMCapabilities) -> None:
    # sockaddr_un takes 107 bytes: the sockets live under /run/kubevisor/qemu instead
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    driver = QemuDriver(deep, capabilities=capabilities)
    vm_id = "f" * 36
    assert len(str(deep / vm_id / "console.sock")) > 107
    try:
        await driver.create(guest_spec(vm_id))
        state = await driver.start(vm_id)
        assert len(state.console_socket) <= 107 and len(state.qmp_socket) <= 107
        await wait_ready(state.console_log)
        assert "deep-ok" in await console_run(state.console_socket, "echo deep-ok")
        run_dir = Path(state.qmp_socket).parent
    finally:
        await driver.delete(vm_id)
    assert not run_dir.exists() and not (deep / vm_id).exists()
    assert qemu_processes(str(deep)) == []


async def test_uefi_firmware_boots_the_guest(driver: QemuDriver) -> None:
    if not driver.capabilities.uefi:
        pytest.skip("OVMF is not installed")
    await driver.create(guest_spec("uefi", firmware="uefi", memory_mib=256))
    assert (driver.root / "uefi" / "OVMF_VARS.fd").stat().st_size > 0
    state = await driver.start("uefi")
    hostname, _ = await wait_ready(state.console_log, timeout=120)
    assert hostname == "kubevisor-guest"
    await driver.delete("uefi")
    assert_gone(driver, "uefi")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bridge, tap, netns)")
async def test_tap_on_a_bridge_with_a_static_address(driver: QemuDriver, tmp_path: Path) -> None:
    from tests.runtime.qemu.bridge import test_bridge

    with test_bridge() as net:
        from kubevisor.runtime.qemu import seed as seeds

        mac = random_mac()
        seed = await make_seed(tmp_path / "seed.iso", hostname="vm-tap", network_config=seeds.render_network_config(
            [{"mac": mac, "addresses": [f"{net.guest_ip}/24"], "gateway": net.peer_ip}]))
        await driver.create(guest_spec("tap", seed=seed, interfaces=[
            NetworkInterface(mac=mac, tap=net.tap, bridge=net.bridge)]))
        state = await driver.start("tap")
        assert net.link_master(net.tap) == net.bridge
        assert await wait_ready(state.console_log) == ("vm-tap", net.guest_ip)
        assert "vm-tap" in net.http_get_from_netns(net.guest_ip)
        await driver.suspend("tap")
        assert net.link_master(net.tap) is None  # QEMU's tap went with QEMU
        await driver.resume("tap")
        assert net.link_master(net.tap) == net.bridge
        assert "vm-tap" in net.http_get_from_netns(net.guest_ip)
        await driver.delete("tap")
        assert net.link_master(net.tap) is None
        assert_gone(driver, "tap")
