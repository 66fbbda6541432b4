"""A VM's serial console end to end: a real apiserver (with node-agent
credentials), the node's real stream server on loopback, the vmconsole
controller, and the small test guest run by a real QemuDriver under the
node's data dir with the VirtualMachine object's uid as its id.

A request with a public key is answered with a ticket that decrypts and
matches the stored digest; the ticket's WebSocket reaches the guest shell;
a missing, wrong or expired ticket and an unknown request are Status
refusals; a second session takes the console over; the node's route is
closed without the apiserver's token; ``kubevisor console vm`` without a
terminal runs ``hostname`` in the guest; its errors say what is wrong.
One guest boots for the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kubevisor.api.vmoperator import console
from kubevisor.node.streams.vmconsole import TAKEN_OVER
from kubevisor.runtime.qemu.paths import VMPaths
from tests.runtime.qemu.guestvm import ROOT, guest_image, guest_spec, make_seed, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

NODE = "node-vc"
GROUP_PATH = "/apis/vmoperator.vmware.com/v1alpha6"
MERGE = {"Content-Type": "application/merge-patch+json"}
PROBE_CACHE = ROOT / ".cache" / "qemu-probe.json"


@dataclass
class Stage:
    api: httpx.AsyncClient
    url: str
    kubeconfig: Path
    ca_file: str
    agent_port: int
    agent_token: str
    namespace: str
    vm_name: str
    vm_uid: str
    hostname: str
    proxy_addr: str

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stage]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    if os.geteuid() != 0:
        pytest.skip("the stream server's test set-up runs as root")
    from kubevisor.api.builtin import builtin_registry
    from kubevisor.apiserver.config import KubeletClient, ServerConfig
    from kubevisor.apiserver.pki import ensure_node_credentials, ensure_pki
    from kubevisor.apiserver.server import serve
    from kubevisor.client import Client
    from kubevisor.controllers.vmconsole import VMConsoleController
    from kubevisor.node.streams import StreamServerConfig, serve_streams
    from kubevisor.runtime.qemu import QemuDriver
    from kubevisor.runtime.qemu.probe import probe
    from kubevisor.store import open_store

    root = tmp_path_factory.mktemp("vc")
    pki = root / "api" / "pki"
    creds = ensure_pki(pki)
    cert, key, agent_token = ensure_node_credentials(pki, NODE, sans=["127.0.0.1"])
    store = open_store("sqlite", data_dir=root / "api")
    await store.start()
    config = ServerConfig(store=store, registry=builtin_registry(),
                          kubelet_client=KubeletClient(ca_file=str(creds.ca_file), token=agent_token))
    data_dir = root / "n"  # the node's data dir: pods/, vms/
    PROBE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    caps = await probe(cache_path=str(PROBE_CACHE), kernel=guest_image().kernel)
    driver = QemuDriver(data_dir / "vms", capabilities=caps)
    namespace = "vc-" + secrets.token_hex(3)
    hostname = "vmcon-" + secrets.token_hex(3)
    vm_uid = ""
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve(config, data_dir=root / "api", tune_gc=False))
        # The stream server as the agent starts it: VM consoles under <data-dir>/vms.
        port = await stack.enter_async_context(serve_streams(
            StreamServerConfig(cert_file=str(cert), key_file=str(key), token=agent_token,
                               host="127.0.0.1", port=0),
            None, None, data_dir / "pods"))  # type: ignore[arg-type]  # no pods here
        api = await stack.enter_async_context(httpx.AsyncClient(
            base_url=str(url), verify=ssl.create_default_context(cafile=str(creds.ca_file)),
            headers={"Authorization": f"Bearer {creds.token}"}, timeout=30))
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        assert (await api.post("/api/v1/namespaces", json=ns)).status_code == 201
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
        assert (await api.post("/api/v1/nodes", json=node)).status_code == 201
        r = await api.patch(f"/api/v1/nodes/{NODE}/status", headers=MERGE, json={"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})
        assert r.status_code == 200, r.text
        vm_uid = await create_vm(api, namespace, "guest", node=NODE)

        client = await stack.enter_async_context(Client.from_kubeconfig(url.kubeconfig))
        controller = VMConsoleController(client)
        task = asyncio.create_task(controller.run())
        try:
            seed = await make_seed(root / "seed.iso", hostname=hostname)
            await driver.create(guest_spec(vm_uid, seed=seed))
            state = await driver.start(vm_uid)
            # the stream server finds the socket from the VM's directory alone
            assert state.console_socket == str(VMPaths(data_dir / "vms" / vm_uid).console)
            seen, _ = await wait_ready(state.console_log)
            assert seen == hostname
            yield Stage(api=api, url=str(url), kubeconfig=url.kubeconfig,
                        ca_file=str(creds.ca_file), agent_port=port, agent_token=agent_token,
                        namespace=namespace, vm_name="guest", vm_uid=vm_uid, hostname=hostname,
                        proxy_addr=f"127.0.0.1:{url.port}")
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            with contextlib.suppress(Exception):
                await driver.delete(vm_uid)
    await store.close()
    assert not (data_dir / "vms" / vm_uid).exists()


async def create_vm(api: httpx.AsyncClient, namespace: str, name: str, *, node: str) -> str:
    """A VirtualMachine object (placed on ``node`` when given); its uid."""
    body = {"apiVersion": "vmoperator.vmware.com/v1alpha6", "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {"className": "small", "imageName": "test-guest"}}
    r = await api.post(f"{GROUP_PATH}/namespaces/{namespace}/virtualmachines", json=body)
    assert r.status_code == 201, r.text
    if node:
        r = await api.patch(f"{GROUP_PATH}/namespaces/{namespace}/virtualmachines/{name}/status",
                            headers=MERGE, json={"status": {"nodeName": node}})
        assert r.status_code == 200, r.text
    return str(r.json()["metadata"]["uid"])


def requests_path(stage: Stage, name: str = "") -> str:
    path = f"{GROUP_PATH}/namespaces/{stage.namespace}/virtualmachinewebconsolerequests"
    return f"{path}/{name}" if name else path


async def new_request(stage: Stage, key: rsa.RSAPrivateKey, *, vm: str | None = None,
                      public_key: str | None = None) -> str:
    body = {"apiVersion": "vmoperator.vmware.com/v1alpha6",
            "kind": "VirtualMachineWebConsoleRequest",
            "metadata": {"generateName": "req-"},
            "spec": {"name": vm or stage.vm_name,
                     "publicKey": public_key or console.public_key_pem(key)}}
    r = await stage.api.post(requests_path(stage), json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["metadata"]["name"])


async def answered(stage: Stage, name: str, *, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await stage.api.get(requests_path(stage, name))
        assert r.status_code == 200, r.text
        if (r.json().get("status") or {}).get("response"):
            return dict(r.json())
        assert time.monotonic() < deadline, f"request {name} not answered: {r.text}"
        await asyncio.sleep(0.1)


async def ticket_for(stage: Stage) -> tuple[str, str]:
    """(request name, decrypted ticket) of a fresh, answered request."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = await new_request(stage, key)
    request = await answered(stage, name)
    return name, console.decrypt(key, request["status"]["response"])


def open_console(stage: Stage, name: str, ticket: str | None) -> Any:
    query = "" if ticket is None else f"?ticket={ticket}"
    return connect(f"wss://127.0.0.1:{stage.url.rsplit(':', 1)[1]}"
                   f"{console.console_path(stage.namespace, name)}{query}",
                   ssl=stage.ssl(), max_size=None, compression=None, open_timeout=20)


async def run_in_guest(ws: ClientConnection, command: str, *, timeout: float = 30) -> str:
    """Type ``command`` on the console; what it printed between markers."""
    tag = secrets.token_hex(4)
    await ws.send(f'\necho "B""EGIN-{tag}"; {command}; echo "E""ND-{tag}"\n'.encode())
    pattern = re.compile(rf"BEGIN-{tag}\r?\n(.*?)END-{tag}".encode(), re.S)
    data = b""
    deadline = time.monotonic() + timeout
    while (match := pattern.search(data)) is None:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no answer to {command!r}: {data[-1000:]!r}"
        with contextlib.suppress(TimeoutError):
            message = await asyncio.wait_for(ws.recv(), remaining)
            assert isinstance(message, bytes), "console frames are binary"
            data += message
    return match.group(1).decode(errors="replace").replace("\r\n", "\n")


async def refusal(stage: Stage, name: str, ticket: str | None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as info:
        async with open_console(stage, name, ticket):
            pass
    return info.value.response.status_code, orjson.loads(info.value.response.body or b"{}")


# ------------------------------------------------------------------ tests


async def test_request_is_answered_with_an_encrypted_ticket(stage: Stage) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = await new_request(stage, key)
    request = await answered(stage, name)
    status, md = request["status"], request["metadata"]
    ticket = console.decrypt(key, status["response"])
    assert len(ticket) >= 40
    digest = md["annotations"][console.TICKET_ANNOTATION]
    assert console.ticket_matches(digest, md["uid"], stage.vm_uid, ticket)
    assert status["proxyAddr"] == stage.proxy_addr
    expiry = datetime.fromisoformat(status["expiryTime"])
    now = datetime.now(UTC)
    assert now + timedelta(seconds=100) < expiry <= now + timedelta(seconds=121)
    assert md["labels"][console.UUID_LABEL] == md["uid"]
    assert [(o["kind"], o["uid"]) for o in md["ownerReferences"]] == [("VirtualMachine", stage.vm_uid)]
    r = await stage.api.get(f"/api/v1/namespaces/{stage.namespace}/events",
                            params={"fieldSelector": f"involvedObject.name={name}"})
    assert [e["reason"] for e in r.json()["items"]] == ["TicketIssued"]


async def test_ticket_opens_the_guest_shell(stage: Stage) -> None:
    name, ticket = await ticket_for(stage)
    async with open_console(stage, name, ticket) as ws:
        tag = secrets.token_hex(4)
        assert await run_in_guest(ws, f'echo "hel""lo-{tag}"') == f"hello-{tag}\n"
        assert await run_in_guest(ws, "hostname") == f"{stage.hostname}\n"
    # the ticket serves again until it expires
    async with open_console(stage, name, ticket) as ws:
        assert await run_in_guest(ws, "hostname") == f"{stage.hostname}\n"


async def test_bad_tickets_are_refused_with_statuses(stage: Stage) -> None:
    name, ticket = await ticket_for(stage)
    code, body = await refusal(stage, name, None)
    assert (code, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")
    assert "ticket" in body["message"]
    code, body = await refusal(stage, name, "x" + ticket[1:])
    assert (code, body["reason"]) == (401, "Unauthorized")
    code, body = await refusal(stage, "no-such-request", ticket)
    assert (code, body["reason"]) == (404, "NotFound")
    assert body["message"] == ('virtualmachinewebconsolerequests.vmoperator.vmware.com '
                               '"no-such-request" not found')
    other, _ = await ticket_for(stage)  # a valid ticket of another request opens nothing
    code, _ = await refusal(stage, other, ticket)
    assert code == 401

    # expired: a finalizer keeps the request the controller deletes at its expiry
    path = requests_path(stage, name)
    r = await stage.api.patch(path, headers=MERGE,
                              json={"metadata": {"finalizers": ["test.kubevisor.io/hold"]}})
    assert r.status_code == 200, r.text
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = await stage.api.patch(path + "/status", headers=MERGE, json={"status": {"expiryTime": past}})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while not (await stage.api.get(path)).json()["metadata"].get("deletionTimestamp"):
        assert time.monotonic() < deadline, "the controller did not delete the expired request"
        await asyncio.sleep(0.1)
    code, body = await refusal(stage, name, ticket)
    assert (code, body["reason"]) == (403, "Forbidden")
    assert "expired" in body["message"] and "create a new" in body["message"]
    r = await stage.api.patch(path, headers=MERGE, json={"metadata": {"finalizers": None}})
    assert r.status_code == 200, r.text
    assert (await stage.api.get(path)).status_code == 404


async def test_a_second_session_takes_the_console_over(stage: Stage) -> None:
    name, ticket = await ticket_for(stage)
    async with open_console(stage, name, ticket) as first:
        assert await run_in_guest(first, "hostname") == f"{stage.hostname}\n"
        async with open_console(stage, name, ticket) as second:
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(first.recv(), 10)
            assert first.close_reason == TAKEN_OVER
            assert await run_in_guest(second, "hostname") == f"{stage.hostname}\n"


async def test_node_route_needs_the_apiservers_token(stage: Stage) -> None:
    base = f"wss://127.0.0.1:{stage.agent_port}/vmConsole"
    for headers, path, code in (({}, stage.vm_uid, 401),
                                ({"Authorization": "Bearer nope"}, stage.vm_uid, 401),
                                ({"Authorization": f"Bearer {stage.agent_token}"},
                                 "00000000-0000-0000-0000-000000000000", 404),
                                ({"Authorization": f"Bearer {stage.agent_token}"}, "..", 400)):
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{base}/{path}", ssl=stage.ssl(), additional_headers=headers):
                pass
        assert info.value.response.status_code == code, (path, info.value.response.body)
    r = await stage.api.get(console.console_path(stage.namespace, "whatever"))
    assert (r.status_code, r.json()["message"]) == (400, "Upgrade request required")


async def test_controller_tells_why_it_cannot_answer(stage: Stage) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await create_vm(stage.api, stage.namespace, "unplaced", node="")
    cases = {await new_request(stage, key, vm="nowhere"): "VirtualMachineNotFound",
             await new_request(stage, key, vm="unplaced"): "VirtualMachineNotPlaced",
             await new_request(stage, key, public_key="-----BEGIN PUBLIC KEY-----\nAAAA\n"
                               "-----END PUBLIC KEY-----\n"): "InvalidPublicKey"}
    deadline = time.monotonic() + 20
    for name, reason in cases.items():
        while True:
            r = await stage.api.get(f"/api/v1/namespaces/{stage.namespace}/events",
                                    params={"fieldSelector": f"involvedObject.name={name}"})
            reasons = [(e["type"], e["reason"]) for e in r.json()["items"]]
            if reasons:
                break
            assert time.monotonic() < deadline, f"no event for {name}"
            await asyncio.sleep(0.1)
        assert reasons == [("Warning", reason)], (name, r.json()["items"])
        assert not ((await stage.api.get(requests_path(stage, name))).json().get("status") or {})


async def kubevisor_console(stage: Stage, *args: str, stdin: bytes = b"",
                            timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubevisor.cli.main", "console", "vm", *args,
        "--kubeconfig", str(stage.kubeconfig), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def test_cli_runs_a_command_on_the_console(stage: Stage) -> None:
    code, out, err = await kubevisor_console(stage, stage.vm_name, "-n", stage.namespace,
                                             stdin=b"hostname\n")
    assert code == 0, err
    lines = [line.strip() for line in out.splitlines()]
    assert stage.hostname in lines, out
    r = await stage.api.get(requests_path(stage))  # the CLI deleted its request
    assert [i for i in r.json()["items"] if i["metadata"]["name"].startswith("guest-console-")] == []


async def test_cli_errors_say_what_is_wrong(stage: Stage) -> None:
    code, _, err = await kubevisor_console(stage, "absent", "-n", stage.namespace)
    assert code == 1
    assert err.strip() == (f'error: virtualmachines.vmoperator.vmware.com "absent" not found '
                           f'in namespace "{stage.namespace}"')
    await create_vm(stage.api, stage.namespace, "waiting", node="")
    code, _, err = await kubevisor_console(stage, "waiting", "-n", stage.namespace,
                                           "--timeout", "3")
    assert code == 1
    assert "does not run on a node yet" in err.splitlines()[-1], err
    r = await stage.api.get(requests_path(stage))
    assert [i for i in r.json()["items"] if i["spec"]["name"] == "waiting"] == []


async def test_cli_on_a_terminal_is_raw_and_quits_on_ctrl_bracket(stage: Stage) -> None:
    master, slave = os.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubevisor.cli.main", "console", "vm", stage.vm_name, "-n", stage.namespace,
        "--kubeconfig", str(stage.kubeconfig), stdin=slave, stdout=slave, stderr=slave, cwd=ROOT)
    os.close(slave)
    seen = b""
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            chunks.put_nowait(os.read(master, 4096))
        except OSError:  # EIO: the terminal's last user is gone
            loop.remove_reader(master)

    loop.add_reader(master, readable)

    async def read_until(pattern: bytes, timeout: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while pattern not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {pattern!r} on the terminal: {seen[-800:]!r}"
            with contextlib.suppress(TimeoutError):
                seen += await asyncio.wait_for(chunks.get(), remaining)

    try:
        await read_until(b"Escape character is '^]'")
        tag = secrets.token_hex(4)
        os.write(master, f'echo "ra""w-{tag}"\r'.encode())  # Enter in raw mode is CR
        await read_until(f"raw-{tag}".encode())
        os.write(master, b"\x1d")
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await read_until(b"Connection closed.")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        loop.remove_reader(master)
        os.close(master)
