"""The ContainerRuntime contract, run against every OCI runtime detected on
this host (runc and crun), with real containers from a busybox rootfs."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubevisor.runtime.errors import ContainerError, ContainerNotFoundError
from kubevisor.runtime.oci import OciRuntime, cgroups
from kubevisor.runtime.oci.conmon import pid_start
from kubevisor.runtime.oci.detect import Detection
from kubevisor.runtime.types import ContainerState, Mount, Resources
from tests.runtime.oci.conftest import needs_root, read_log, spec, wait_for

pytestmark = [needs_root, pytest.mark.root]


async def stopped(rt: OciRuntime, container_id: str, timeout: float = 10.0) -> ContainerState:
    async def check() -> ContainerState | None:
        state = await rt.state(container_id)
        return state if state is not None and state.status == "stopped" else None
    result: ContainerState = await wait_for(check, timeout=timeout)
    return result


async def drain(proc: object) -> dict[str, bytes]:
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    while (chunk := await proc.read()) is not None:  # type: ignore[attr-defined]
        out[chunk[0]] += chunk[1]
    return out


# ----------------------------------------------------------------- lifecycle


async def test_run_is_running_with_pid(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sleep", "60"], labels={"pod": "p1", "container": "c"})
    state = await runtime.run(s)
    assert state.status == "running"
    assert state.pid > 0 and pid_start(state.pid) is not None
    assert state.started_at is not None and abs(state.started_at - time.time()) < 30
    again = await runtime.state(s.id)
    assert again is not None and again.status == "running" and again.pid == state.pid
    assert again.labels == {"pod": "p1", "container": "c"}
    assert [c.id for c in await runtime.list()] == [s.id]


async def test_output_lands_in_cri_log(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sh", "-c", "echo hello; echo oops >&2; echo bye"])
    await runtime.run(s)
    final = await stopped(runtime, s.id)
    assert final.exit_code == 0 and final.reason == "Completed"
    lines = read_log(s.log_path)
    assert ("stdout", "hello") in lines and ("stderr", "oops") in lines
    assert [line for stream, line in lines if stream == "stdout"] == ["hello", "bye"]


async def test_exit_code_and_times(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sh", "-c", "exit 3"])
    started = await runtime.run(s)
    final = await stopped(runtime, s.id)
    assert final.exit_code == 3
    assert final.reason == "Error"
    assert final.pid == 0
    assert final.finished_at is not None and started.started_at is not None
    assert final.finished_at >= started.started_at - 1


@pytest.mark.parametrize(("script", "exit_code", "killed"), [
    ("trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done", 7, False),
    ("trap '' TERM; while true; do sleep 0.1; done", 137, True),
])
async def test_stop_with_grace(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path,
                               script: str, exit_code: int, killed: bool) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sh", "-c", script])
    await runtime.run(s)
    await asyncio.sleep(0.3)  # let the shell install its trap
    grace = 1.5
    began = time.monotonic()
    final = await runtime.stop(s.id, grace_seconds=grace)
    took = time.monotonic() - began
    assert final.status == "stopped"
    assert final.exit_code == exit_code
    if killed:
        assert took >= grace
    else:
        assert took < grace
        assert ("stdout", "got-term") in read_log(s.log_path)
    # stopping a stopped container returns the same final state
    assert (await runtime.stop(s.id, grace_seconds=1)).exit_code == exit_code


async def test_signal(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sh", "-c", "trap 'echo usr1; exit 0' USR1; while true; do sleep 0.1; done"])
    await runtime.run(s)
    await asyncio.sleep(0.3)
    await runtime.signal(s.id, signal.SIGUSR1)
    final = await stopped(runtime, s.id)
    assert final.exit_code == 0
    assert ("stdout", "usr1") in read_log(s.log_path)


async def test_unknown_container(runtime: OciRuntime) -> None:
    assert await runtime.state("no-such") is None
    with pytest.raises(ContainerNotFoundError):
        await runtime.stop("no-such", grace_seconds=1)
    with pytest.raises(ContainerNotFoundError):
        await runtime.signal("no-such", signal.SIGTERM)
    with pytest.raises(ContainerNotFoundError):
        await runtime.exec("no-such", ["true"])
    await runtime.remove("no-such")  # idempotent


async def test_duplicate_id_refused(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sleep", "60"])
    await runtime.run(s)
    with pytest.raises(ContainerError, match="already exists"):
        await runtime.run(s)
    assert (await runtime.state(s.id)).status == "running"  # type: ignore[union-attr]


# ------------------------------------------------------------------- limits


async def test_memory_limit_oom_killed(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    if not runtime.capabilities.memory_limits:
        pytest.skip(f"{runtime.capabilities.name} cannot enforce memory limits here")
    s = spec(busybox_rootfs, tmp_path, ["tail", "/dev/zero"],
             resources=Resources(memory_limit_bytes=32 << 20))
    await runtime.run(s)
    final = await stopped(runtime, s.id, timeout=60)
    assert final.exit_code == 137
    assert final.reason == "OOMKilled"


async def test_limits_reach_the_kernel(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    caps = runtime.capabilities
    s = spec(busybox_rootfs, tmp_path, ["sleep", "60"], resources=Resources(
        cpu_request_millis=250, cpu_limit_millis=300, memory_limit_bytes=48 << 20, pids_limit=42))
    state = await runtime.run(s)
    dirs = cgroups.process_dirs(state.pid)
    if caps.memory_limits and "memory" in dirs:
        assert cgroups.read_knob(dirs["memory"], "memory.limit_in_bytes") == str(48 << 20)
    if caps.pids_limits and "pids" in dirs:
        assert cgroups.read_knob(dirs["pids"], "pids.max") == "42"
    if caps.cpu_limits and "cpu" in dirs:
        assert cgroups.read_knob(dirs["cpu"], "cpu.cfs_quota_us") == "30000"
        assert cgroups.read_knob(dirs["cpu"], "cpu.shares") == "256"


# --------------------------------------------------------- process settings


async def test_env_cwd_hostname_user(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path,
             ["sh", "-c", 'echo "foo=$FOO"; pwd; hostname; id -u; id -g'],
             env={"FOO": "bar baz"}, cwd="/tmp", hostname="web-0", uid=65534, gid=65534)
    await runtime.run(s)
    assert (await stopped(runtime, s.id)).exit_code == 0
    assert [line for _, line in read_log(s.log_path)] == ["foo=bar baz", "/tmp", "web-0", "65534", "65534"]


async def test_bind_mount_read_only_and_tmpfs(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    host = tmp_path / "data"
    host.mkdir()
    (host / "f").write_text("from-host\n")
    script = ("cat /data/f; if touch /data/new 2>/dev/null; then echo writable; else echo read-only; fi; "
              "echo x > /scratch/y && cat /scratch/y; grep ' /scratch ' /proc/mounts | cut -d' ' -f3")
    s = spec(busybox_rootfs, tmp_path, ["sh", "-c", script],
             mounts=[Mount("/data", str(host), read_only=True), Mount("/scratch", kind="tmpfs")])
    await runtime.run(s)
    assert (await stopped(runtime, s.id)).exit_code == 0
    assert [line for _, line in read_log(s.log_path)] == ["from-host", "read-only", "x", "tmpfs"]
    assert not (host / "new").exists()


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kvoci-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "kvdummy0", "type", "veth", "peer", "name", "kvdummy1"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


async def test_shared_network_namespace(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path,
                                        netns: str) -> None:
    path = f"/run/netns/{netns}"
    host_inode = os.stat(path).st_ino
    seen = []
    for _ in range(2):
        s = spec(busybox_rootfs, tmp_path, ["sleep", "60"], netns=path)
        await runtime.run(s)
        proc = await runtime.exec(s.id, ["sh", "-c", "readlink /proc/self/ns/net; cat /proc/net/dev"])
        out = await drain(proc)
        assert await proc.wait() == 0
        seen.append(out["stdout"].decode())
    first, second = seen
    assert first.splitlines()[0] == second.splitlines()[0] == f"net:[{host_inode}]"
    assert "kvdummy0" in first and "kvdummy0" in second
    # and a container of its own has another namespace, without the dummy
    own = spec(busybox_rootfs, tmp_path, ["sh", "-c", "readlink /proc/self/ns/net; cat /proc/net/dev"])
    await runtime.run(own)
    await stopped(runtime, own.id)
    lines = [line for _, line in read_log(own.log_path)]
    assert lines[0] != f"net:[{host_inode}]"
    assert not any("kvdummy0" in line for line in lines)


# --------------------------------------------------------------------- exec


async def test_exec_pipes(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sleep", "60"], env={"IN_CONTAINER": "yes"})
    await runtime.run(s)
    proc = await runtime.exec(s.id, ["sh", "-c", 'echo "out $IN_CONTAINER $EXTRA"; echo err >&2; cat; exit 4'],
                              stdin=True, env={"EXTRA": "more"})
    await proc.write_stdin(b"line from stdin\n")
    await proc.close_stdin()
    out = await drain(proc)
    assert await proc.wait() == 4
    assert out["stdout"] == b"out yes more\nline from stdin\n"
    assert out["stderr"] == b"err\n"


async def test_exec_without_stdin_and_kill(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sleep", "60"])
    await runtime.run(s)
    proc = await runtime.exec(s.id, ["cat"])  # stdin is /dev/null: ends at once
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    proc = await runtime.exec(s.id, ["sleep", "30"])
    await asyncio.sleep(0.3)
    await proc.kill()
    assert await asyncio.wait_for(proc.wait(), 10) != 0
    assert (await runtime.state(s.id)).status == "running"  # type: ignore[union-attr]


async def test_exec_tty_and_resize(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sleep", "60"])
    await runtime.run(s)
    proc = await runtime.exec(s.id, ["sh"], tty=True, stdin=True)
    await proc.resize(cols=123, rows=45)
    await asyncio.sleep(0.2)
    await proc.write_stdin(b"stty size; tty; exit 5\n")
    out = await drain(proc)
    assert await asyncio.wait_for(proc.wait(), 10) == 5
    assert out["stderr"] == b""
    text = out["stdout"].decode(errors="replace")
    assert "45 123" in text
    assert "/dev/pts/" in text


async def test_exec_in_stopped_container_fails(runtime: OciRuntime, busybox_rootfs: Path,
                                               tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["true"])
    await runtime.run(s)
    await stopped(runtime, s.id)
    with pytest.raises(ContainerError, match="not running"):
        await runtime.exec(s.id, ["true"])


# ------------------------------------------------------- restarts and removal


async def test_readoption_by_a_fresh_runtime(runtime: OciRuntime, detection: Detection,
                                             busybox_rootfs: Path, tmp_path: Path,
                                             cgroup_parent: str) -> None:
    state_dir = str(runtime.dirs.root)
    s = spec(busybox_rootfs, tmp_path, ["sh", "-c", "trap 'exit 9' TERM; while true; do sleep 0.1; done"],
             labels={"k": "v"})
    first = await runtime.run(s)
    done = spec(busybox_rootfs, tmp_path, ["sh", "-c", "exit 2"])
    await runtime.run(done)
    await stopped(runtime, done.id)
    profile = runtime.profile
    del runtime
    gc.collect()
    await asyncio.sleep(0.3)
    assert pid_start(first.pid) is not None  # still running without its creator

    fresh = OciRuntime(state_dir, profile, cgroup_parent=cgroup_parent)
    states = {st.id: st for st in await fresh.list()}
    assert states[s.id].status == "running" and states[s.id].pid == first.pid
    assert states[s.id].labels == {"k": "v"}
    assert states[done.id].status == "stopped" and states[done.id].exit_code == 2
    final = await fresh.stop(s.id, grace_seconds=5)
    assert final.exit_code == 9
    await fresh.remove(s.id)
    await fresh.remove(done.id)
    assert await fresh.list() == []


@pytest.mark.slow
async def test_container_outlives_the_process_that_ran_it(runtime_name: str, detection: Detection,
                                                          busybox_rootfs: Path, tmp_path: Path,
                                                          cgroup_parent: str) -> None:
    state_dir = tmp_path / "state2"
    container_id = f"t-{uuid.uuid4().hex[:10]}"
    log_path = tmp_path / "outlive.log"
    code = f"""
import asyncio
from kubevisor.runtime.oci import open_runtime
from kubevisor.runtime.types import ContainerSpec
async def main():
    rt = await open_runtime({str(state_dir)!r}, prefer={runtime_name!r}, cgroup_parent={cgroup_parent!r})
    st = await rt.run(ContainerSpec(id={container_id!r}, rootfs={str(busybox_rootfs)!r},
        args=["sh", "-c", "while true; do echo tick; sleep 0.2; done"], log_path={str(log_path)!r},
        labels={{"who": "child"}}))
    print(st.pid)
asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=str(Path(__file__).resolve().parents[3]))
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    rt = OciRuntime(str(state_dir), detection.profiles[runtime_name], cgroup_parent=cgroup_parent)
    try:
        state = await rt.state(container_id)
        assert state is not None and state.status == "running" and state.pid == pid
        assert state.labels == {"who": "child"}
        before = len(read_log(str(log_path)))
        await asyncio.sleep(0.6)
        assert len(read_log(str(log_path))) > before  # conmon still logging
        final = await rt.stop(container_id, grace_seconds=0.5)
        assert final.exit_code == 137  # sh as pid 1 ignores an untrapped TERM
    finally:
        await rt.remove(container_id)


async def test_remove_leaves_nothing(runtime: OciRuntime, busybox_rootfs: Path, tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sh", "-c", "echo kept; sleep 60"],
             resources=Resources(memory_limit_bytes=64 << 20))
    state = await runtime.run(s)
    record = runtime.dirs.load(s.id)
    assert record is not None
    cgroup_dirs = [d for d in cgroups.process_dirs(state.pid).values() if s.id in d]
    if runtime.profile.way.cgroups:
        assert cgroup_dirs and all(os.path.isdir(d) for d in cgroup_dirs)
    conmon_pid = record.conmon_pid
    assert conmon_pid > 0 and pid_start(conmon_pid) is not None
    await wait_for(lambda: read_log(s.log_path))

    await runtime.stop(s.id, grace_seconds=0.2)
    await runtime.remove(s.id)
    assert await runtime.state(s.id) is None
    assert await runtime.list() == []
    assert not (runtime.dirs.containers / s.id).exists()
    assert await runtime.command.state(s.id) is None  # the runtime forgot it
    assert not any(os.path.exists(d) for d in cgroup_dirs)
    assert pid_start(conmon_pid) is None
    assert pid_start(state.pid) is None
    assert read_log(s.log_path) == [("stdout", "kept")]  # the log stays
    await runtime.remove(s.id)  # idempotent


async def test_remove_kills_a_running_container(runtime: OciRuntime, busybox_rootfs: Path,
                                                tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["sleep", "60"])
    state = await runtime.run(s)
    await runtime.remove(s.id)
    assert pid_start(state.pid) is None
    assert await runtime.state(s.id) is None


async def test_failed_start_leaves_nothing(runtime: OciRuntime, busybox_rootfs: Path,
                                           tmp_path: Path) -> None:
    s = spec(busybox_rootfs, tmp_path, ["/no/such/binary"], resources=Resources(memory_limit_bytes=64 << 20))
    with pytest.raises(ContainerError) as info:
        await runtime.run(s)
    assert "/no/such/binary" in str(info.value)
    assert await runtime.state(s.id) is None
    assert await runtime.list() == []
    assert not (runtime.dirs.containers / s.id).exists()
    assert await runtime.command.state(s.id) is None
    for root in Path("/sys/fs/cgroup").iterdir():
        assert not (root / runtime.cgroup_parent.lstrip("/") / s.id).exists()
    # the same id can be used again once the cause is fixed
    ok = spec(busybox_rootfs, tmp_path, ["true"], id=s.id)
    await runtime.run(ok)
    assert (await stopped(runtime, s.id)).exit_code == 0


async def test_bad_rootfs_and_id(runtime: OciRuntime, tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match="rootfs"):
        await runtime.run(spec(tmp_path / "missing", tmp_path, ["true"]))
    with pytest.raises(ContainerError, match="invalid container id"):
        await runtime.run(spec(tmp_path, tmp_path, ["true"], id="../escape"))
    assert await runtime.list() == []
