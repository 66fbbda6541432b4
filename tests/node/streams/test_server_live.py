"""The stream server spoken to directly, as the apiserver (or the Python
client's v4 protocol) speaks to it: authentication and Status refusals,
the exec channel protocols (greeting, stdout/stderr channels, exit
Status, v5 stdin close, base64), logs that follow a container to its end,
``previous``, and attach to a container's main process through conmon;
all against containers of the real OCI driver."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.node.streams.live import Stage, live_stage, require_live

pytestmark = pytest.mark.slow


@pytest.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    require_live()
    async with live_stage(tmp_path) as s:
        yield s


def _http(stage: Stage, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token or stage.token}"} if token != "" else {}
    return httpx.AsyncClient(base_url=stage.agent_url, headers=headers,
                             verify=ssl.create_default_context(cafile=stage.ca_file), timeout=30)


def _ws(stage: Stage, path: str, protocols: list[str], token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token or stage.token}"} if token != "" else {}
    return connect(f"wss://127.0.0.1:{stage.agent_port}{path}",
                   ssl=ssl.create_default_context(cafile=stage.ca_file),
                   additional_headers=headers, subprotocols=protocols)  # type: ignore[arg-type]


async def _drain(ws: ClientConnection) -> list[tuple[int, bytes]]:
    messages = []
    async for message in ws:
        assert isinstance(message, bytes)
        messages.append((message[0], message[1:]))
    return messages


def _joined(messages: list[tuple[int, bytes]], channel: int) -> bytes:
    return b"".join(data for ch, data in messages if ch == channel)


async def test_refusals_are_statuses(stage: Stage) -> None:
    async with _http(stage, token="") as client:
        assert (await client.get("/healthz")).text == "ok"
        r = await client.get("/containerLogs/default/web/app")
        assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    async with _http(stage, token="wrong") as client:
        assert (await client.get("/containerLogs/default/web/app")).status_code == 401
    async with _http(stage) as client:
        r = await client.get("/containerLogs/default/nothere/app")
        assert r.status_code == 400
        assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "BadRequest", "code": 400,
                            "message": 'container "app" in pod "nothere" is waiting to start: '
                                       "ContainerCreating"}
        r = await client.get("/containerLogs/default/web/app", params={"tailLines": "-2"})
        assert r.status_code == 400
        assert (await client.get("/nowhere")).status_code == 404
        r = await client.post("/exec/default/web/app", params={"command": "ls"})
        assert (r.status_code, r.json()["message"]) == (400, "Upgrade request required")
    with pytest.raises(InvalidStatus) as exc:
        async with _ws(stage, "/exec/default/web/app?command=ls&stdout=1", ["v5.channel.k8s.io"],
                       token="wrong"):
            pass
    assert exc.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as exc:
        async with _ws(stage, "/exec/default/nothere/app?command=ls&stdout=1",
                       ["v5.channel.k8s.io"]):
            pass
    assert exc.value.response.status_code == 404
    assert orjson.loads(exc.value.response.body or b"")["message"] == 'container not found ("app")'
    with pytest.raises(InvalidStatus) as exc:
        async with _ws(stage, "/exec/default/nothere/app?command=ls", ["v5.channel.k8s.io"]):
            pass
    assert b"you must specify at least 1 of stdin, stdout, stderr" in (exc.value.response.body or b"")


async def test_exec_channels_and_exit_status(stage: Stage) -> None:
    await stage.make_pod("web", ["sleep", "1000"], netns=False)
    path = ("/exec/default/web/app?command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262"
            "%3B%20exit%203&stdout=1&stderr=1")
    async with _ws(stage, path, ["v4.channel.k8s.io"]) as ws:
        assert ws.subprotocol == "v4.channel.k8s.io"
        messages = await _drain(ws)
        assert ws.close_code == 1000
    assert messages[0] == (1, b"")  # the greeting on stdout
    assert (_joined(messages, 1), _joined(messages, 2)) == (b"out\n", b"err\n")
    assert orjson.loads(_joined(messages, 3)) == {
        "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command "
                   "[sh -c echo out; echo err >&2; exit 3], exit code 3",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}

    async with _ws(stage, "/exec/default/web/app?command=true&stdout=1",
                   ["v5.channel.k8s.io", "v4.channel.k8s.io"]) as ws:
        assert ws.subprotocol == "v5.channel.k8s.io"
        messages = await _drain(ws)
    assert orjson.loads(_joined(messages, 3)) == {"metadata": {}, "status": "Success"}

    # base64: text messages, a digit for the channel, only a failure's message.
    async with _ws(stage, "/exec/default/web/app?command=sh&command=-c&command=echo%20hi%3Bexit%201"
                          "&stdout=1", ["base64.channel.k8s.io"]) as ws:
        texts = [m async for m in ws]
    assert all(isinstance(t, str) for t in texts)
    decoded = [(int(t[0]), base64.b64decode(t[1:])) for t in texts]
    assert _joined(decoded, 1) == b"hi\n"
    assert _joined(decoded, 3).startswith(b"command terminated with non-zero exit code")


async def test_exec_stdin_until_the_v5_close_signal(stage: Stage) -> None:
    await stage.make_pod("web", ["sleep", "1000"], netns=False)
    async with _ws(stage, "/exec/default/web/app?command=wc&command=-c&stdin=1&stdout=1",
                   ["v5.channel.k8s.io"]) as ws:
        for _ in range(10):
            await ws.send(b"\x00" + b"x" * 10000)
        await ws.send(b"\xff\x00")  # stdin is done
        messages = await asyncio.wait_for(_drain(ws), 30)
    assert _joined(messages, 1).strip() == b"100000"
    assert orjson.loads(_joined(messages, 3))["status"] == "Success"


async def test_logs_follow_to_the_end_and_previous(stage: Stage) -> None:
    uid = await stage.make_pod("job", ["sh", "-c", "echo zero"], netns=False)
    await asyncio.sleep(0.5)  # attempt 0 is over
    await stage.run_container(uid, "job", "app", 1,
                              ["sh", "-c", "echo one; sleep 1; echo two >&2; sleep 0.5; echo three"])
    async with _http(stage) as client:
        r = await client.get("/containerLogs/default/job/app", params={"previous": "true"})
        assert (r.status_code, r.text) == (200, "zero\n")
        async with client.stream("GET", "/containerLogs/default/job/app",
                                 params={"follow": "true"}) as response:
            assert response.status_code == 200
            body = b""
            arrivals = []
            async for chunk in response.aiter_raw():
                body += chunk
                arrivals.append(asyncio.get_running_loop().time())
        assert body == b"one\ntwo\nthree\n"
        assert arrivals[-1] - arrivals[0] > 1.0  # streamed while the container ran
        r = await client.get("/containerLogs/default/job/app",
                             params={"timestamps": "true", "tailLines": "1"})
        assert r.text.endswith(" three\n") and r.text[4] == "-"


async def test_attach_to_the_main_process(stage: Stage) -> None:
    await stage.make_pod("echo", ["sh", "-c", "echo ready; while read l; do echo got $l; done; "
                                              "echo bye >&2"], netns=False, stdin=True)
    await asyncio.sleep(0.3)
    async with _ws(stage, "/attach/default/echo/app?stdin=1&stdout=1&stderr=1",
                   ["v5.channel.k8s.io"]) as ws:
        await ws.send(b"\x00hello\n")
        got = b""
        while b"got hello" not in got:
            message = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(message, bytes)
            got += message[1:] if message[0] == 1 else b""
        await ws.send(b"\xff\x00")  # end of input: the loop ends, the container exits
        messages = await asyncio.wait_for(_drain(ws), 30)
    assert _joined(messages, 2) == b"bye\n"
    assert orjson.loads(_joined(messages, 3)) == {"metadata": {}, "status": "Success"}
    async with _http(stage) as client:
        r = await client.get("/containerLogs/default/echo/app")
        assert r.text.splitlines() == ["ready", "got hello", "bye"]


async def test_logs_follow_the_agents_pod_status(tmp_path: Path) -> None:
    """With the agent's cached pods, log requests go by the pod's container
    statuses (as kubelet's do), and unknown pods are 404."""
    require_live()
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    async with live_stage(tmp_path, pod_lookup=lambda ns, name: cache.get((ns, name))) as stage:
        uid = await stage.make_pod("job", ["sh", "-c", "echo zero"], netns=False)
        await asyncio.sleep(0.3)
        first = f"k{uid.replace('-', '')[:16]}"  # see kubevisor.node.containers.container_id
        ids = [s.id for s in await stage.runtime.list()]
        second = await stage.run_container(uid, "job", "app", 1, ["sh", "-c", "echo one; sleep 100"])
        await asyncio.sleep(0.3)
        async with _http(stage) as client:
            r = await client.get("/containerLogs/default/job/app")
            assert (r.status_code, r.json()["message"]) == (404, "pod does not exist")
            cache[("default", "job")] = {"metadata": {"uid": uid}, "status": {"containerStatuses": [{
                "name": "app", "containerID": f"runc://{second}", "state": {"running": {}},
                "lastState": {"terminated": {"containerID": f"runc://{ids[0]}", "exitCode": 0}}}]}}
            assert ids[0].startswith(first)
            assert (await client.get("/containerLogs/default/job/app")).text == "one\n"
            r = await client.get("/containerLogs/default/job/app", params={"previous": "1"})
            assert r.text == "zero\n"
            cache[("default", "job")]["status"]["containerStatuses"][0].update(
                state={"waiting": {"reason": "CrashLoopBackOff"}})
            r = await client.get("/containerLogs/default/job/app")
            assert r.text == "zero\n"  # waiting: the last terminated run's log
