"""The uvicorn TLS runner: serve() over TLS, shutdown that ends watch streams,
start-up failures, and the foreground runner's signal handling.

The app served here is a small ASGI app over the real SQLite store (the
runner under test does not care which app it serves); the full apiserver is
exercised through ``kubevisor up`` in test_up.py.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubevisor.api.kinds import Registry
from kubevisor.apiserver.config import ServerConfig
from kubevisor.apiserver.server import GRACE_SECONDS, ServeError, bind_socket, serve
from kubevisor.store import open_store


def make_app(config: ServerConfig, *, fail_startup: bool = False) -> Any:
    """/ok answers "ok" (401 without a known token); /watch streams store events."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if fail_startup:
                        await send({"type": "lifespan.startup.failed", "message": "boom"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = dict(scope["headers"])
        token = headers.get(b"authorization", b"").removeprefix(b"Bearer ").decode()
        if token not in config.tokens:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"Unauthorized"})
            return
        if scope["path"] == "/watch":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            watcher = config.store.watch("/", after_revision=await config.store.current_revision())
            async for batch in watcher:
                for event in batch:
                    await send({"type": "http.response.body", "body": event.kv.key.encode() + b"\n",
                                "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _config(tmp_path: Path) -> ServerConfig:
    store = open_store("sqlite", data_dir=tmp_path / "state")
    await store.start()
    return ServerConfig(store=store, registry=Registry())


async def test_serves_tls_verified_by_its_ca_with_the_admin_token(tmp_path: Path) -> None:
    config = await _config(tmp_path)
    async with serve(config, data_dir=tmp_path, app=make_app(config)) as url:
        assert url.startswith("https://127.0.0.1:")
        assert url.token in config.tokens
        assert url.kubeconfig == tmp_path / "kubeconfig"
        context = ssl.create_default_context(cafile=url.ca_file)
        for base in (str(url), f"https://localhost:{url.port}"):
            async with httpx.AsyncClient(base_url=base, verify=context) as http:
                assert (await http.get("/ok", headers=url.headers)).text == "ok"
                assert (await http.get("/ok")).status_code == 401
        with pytest.raises(httpx.ConnectError):  # a client that trusts only the system CAs
            async with httpx.AsyncClient(verify=ssl.create_default_context()) as http:
                await http.get(f"{url}/ok")


async def test_exit_ends_watch_streams_and_closes_the_store(tmp_path: Path) -> None:
    config = await _config(tmp_path)
    lines: list[str] = []
    async with serve(config, data_dir=tmp_path, app=make_app(config)) as url:
        http = httpx.AsyncClient(verify=ssl.create_default_context(cafile=url.ca_file), timeout=30)

        async def watch() -> None:
            async with http.stream("GET", f"{url}/watch", headers=url.headers) as response:
                async for line in response.aiter_lines():
                    lines.append(line)

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        await config.store.create("/a", b"1")
        for _ in range(100):
            if lines:
                break
            await asyncio.sleep(0.02)
        assert lines == ["/a"]
        started = time.monotonic()
    elapsed = time.monotonic() - started
    await asyncio.wait_for(task, 5)  # the stream ended instead of being cut
    await http.aclose()
    assert elapsed < GRACE_SECONDS - 1, f"shutdown waited {elapsed:.1f}s for the watch"
    with pytest.raises(Exception):  # noqa: B017 - any store error: it is closed
        await config.store.create("/b", b"2")


async def test_port_in_use_is_a_serve_error(tmp_path: Path) -> None:
    config = await _config(tmp_path)
    taken = bind_socket("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(ServeError, match=r"(?i)address already in use"):
            async with serve(config, "127.0.0.1", taken.getsockname()[1], data_dir=tmp_path,
                             app=make_app(config)):
                pass
    finally:
        taken.close()
        await config.store.close()


async def test_failed_app_startup_is_a_serve_error(tmp_path: Path) -> None:
    config = await _config(tmp_path)
    with pytest.raises(ServeError, match="startup"):
        async with serve(config, data_dir=tmp_path, app=make_app(config, fail_startup=True)):
            pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_foreground_runner_stops_cleanly_on_signal(signum: int) -> None:
    program = textwrap.dedent("""
        import asyncio, sys
        from kubevisor.apiserver.server import run_until_signalled

        async def main(stop):
            print("ready", flush=True)
            await stop.wait()
            print("stopping", flush=True)
            return 0

        sys.exit(run_until_signalled(main))
    """)
    with subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signum)
            assert proc.wait(timeout=30) == 0
            assert proc.stdout.read().strip() == "stopping"
        finally:
            proc.kill()
