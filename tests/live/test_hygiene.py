"""Server pings, idle sockets, status transitions and shutdown, against `python -m app`.

One API process of its own, run as production runs it (`python -m app`: uvicorn with server
pings and the graceful drain), with short pings, idle timeout and offline delay. The shutdown
test stops it, so it comes last.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from odmantic import AIOEngine
from websockets.asyncio.client import ClientConnection, connect

from app.core.config import Settings
from tests.fixtures.identities import MakeUser
from tests.fixtures.readings import MakeDevice
from tests.fixtures.servers import ManagedProcess, local_http
from tests.fixtures.worker import eventually
from tests.live.conftest import Api, authed, recv, send, start_api, until
from tests.live.test_socket import closed_with, post, viewer

PING_S = 0.5
IDLE_S = 1.0
OFFLINE_AFTER_S = 1
RECHECK_S = 0.5


@pytest.fixture(scope="module")
def app_process(settings: Settings, workdir: Path, live_redis: ManagedProcess) -> Iterator[Api]:
    """`python -m app` with short pings, idle timeout and offline delay."""
    api = start_api(
        settings,
        workdir,
        f"redis://127.0.0.1:{live_redis.port}/0",
        "api-live-module",
        as_module=True,
        WS_PING_INTERVAL_S=str(PING_S),
        WS_IDLE_TIMEOUT_S=str(IDLE_S),
        DEVICE_OFFLINE_AFTER_S=str(OFFLINE_AFTER_S),
        PRESENCE_THROTTLE_S="0",
        LIVE_RECHECK_S=str(RECHECK_S),
    )
    yield api
    api.proc.stop()


class TestIdleSockets:
    async def test_a_client_that_answers_no_ping_is_closed(
        self,
        app_process: Api,
        engine: AIOEngine,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        token = await viewer(engine, make_user, device)
        # The client library answers pings by itself; a paused reader answers none.
        deaf = await authed(app_process.ws, token, opened)
        alive = await authed(app_process.ws, token, opened)
        for ws in (deaf, alive):
            await send(ws, type="subscribe", id="s", channel="device.latest", device_id=device.id)
            assert (await recv(ws))["type"] == "subscribed"
        deaf.transport.pause_reading()
        await asyncio.sleep(0.2)
        started = time.monotonic()
        # Meanwhile the answering client stays open and served.
        while time.monotonic() - started < 4 * PING_S:
            await send(alive, type="ping")
            assert (await until(alive, "pong"))["type"] == "pong"
            await asyncio.sleep(0.1)
        deaf.transport.resume_reading()
        code, reason = await closed_with(deaf)
        assert (code, reason) == (1011, "keepalive ping timeout")
        await send(alive, type="ping")
        assert (await until(alive, "pong"))["type"] == "pong"

    async def test_a_socket_without_subscriptions_closes_when_idle(
        self, app_process: Api, make_user: MakeUser, opened: list[ClientConnection]
    ) -> None:
        user = await make_user()
        ws = await authed(app_process.ws, user.id_token, opened)
        started = time.monotonic()
        code, reason = await closed_with(ws, timeout=IDLE_S + 5)
        assert code == 1000
        assert "idle" in reason
        assert time.monotonic() - started >= IDLE_S - 0.3


class TestStatusTransitions:
    async def test_online_then_offline_within_the_documented_bound(
        self,
        app_process: Api,
        engine: AIOEngine,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        token = await viewer(engine, make_user, device)
        ws = await authed(app_process.ws, token, opened)
        await send(ws, type="subscribe", id="st", channel="device.status", device_id=device.id)
        assert (await recv(ws))["type"] == "subscribed"
        first = await until(ws, "event")
        assert first["data"]["status"] == "offline"  # the current status comes first
        resp = await post(app_process, device, {"metrics": {"temperature": 20.0}})
        assert resp.status_code == 202
        stored = time.monotonic()
        online = await until(ws, "event", timeout=RECHECK_S + 5)
        assert (online["id"], online["data"]["status"]) == ("st", "online")
        offline = await until(ws, "event", timeout=OFFLINE_AFTER_S + RECHECK_S + 5)
        assert (offline["id"], offline["data"]["status"]) == ("st", "offline")
        # README bound: silent for DEVICE_OFFLINE_AFTER_S, reported within LIVE_RECHECK_S more
        # (plus scheduling slack on a loaded machine).
        assert time.monotonic() - stored <= OFFLINE_AFTER_S + RECHECK_S + 2.0


class TestShutdown:
    async def test_sigterm_delivers_the_last_readings_then_closes_1001(
        self,
        app_process: Api,
        engine: AIOEngine,
        make_user: MakeUser,
        make_device: MakeDevice,
    ) -> None:
        device = await make_device()
        token = await viewer(engine, make_user, device)
        sockets: list[ClientConnection] = []
        for _ in range(3):
            ws = await connect(app_process.ws, compression=None)
            sockets.append(ws)
            await send(ws, type="auth", token=token)
            assert (await recv(ws))["type"] == "authenticated"
            await send(ws, type="subscribe", id="r", channel="device.readings", device_id=device.id)
            assert (await recv(ws))["type"] == "subscribed"
        # And an SSE stream: an HTTP request that never ends by itself, ended by the drain.
        http = local_http(app_process.url, timeout=10)
        stream_url = f"/api/v1/devices/{device.id}/readings/stream"
        frames: list[str] = []

        async def follow() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.stream("GET", stream_url, headers=headers) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    frames.append(line)

        streaming = asyncio.create_task(follow())
        await eventually(lambda: any(f.startswith("retry:") for f in frames), timeout=5)
        resp = await post(app_process, device, {"metrics": {"temperature": 30.5}})
        assert resp.status_code == 202
        assert app_process.proc.proc is not None
        signalled = time.monotonic()
        app_process.proc.proc.send_signal(signal.SIGTERM)
        for ws in sockets:
            event = await until(ws, "event")
            assert event["data"]["readings"][0]["metrics"] == {"temperature": 30.5}
            code, reason = await closed_with(ws)
            assert code == 1001, (code, reason)
            assert "shutting down" in reason
        async with asyncio.timeout(5):
            await streaming
        await http.aclose()
        assert "event: error" in frames
        assert any("shutting down" in f for f in frames if f.startswith("data:"))
        # uvicorn re-raises the signal it handled once it is done: killed by SIGTERM, cleanly.
        assert await asyncio.to_thread(app_process.proc.proc.wait, 15) in (0, -signal.SIGTERM)
        # Not held up by the open stream (HTTP requests in flight get up to 5 s).
        assert time.monotonic() - signalled < 4.5


def children(pid: int) -> list[str]:
    """Command lines of the processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(cmdline)
    return found


class TestProcesses:
    async def test_web_concurrency_serves_one_port_from_that_many_processes(
        self,
        settings: Settings,
        workdir: Path,
        live_redis: ManagedProcess,
        make_device: MakeDevice,
    ) -> None:
        api = start_api(
            settings,
            workdir,
            f"redis://127.0.0.1:{live_redis.port}/0",
            "api-live-two-processes",
            as_module=True,
            WEB_CONCURRENCY="2",
        )
        try:
            assert api.proc.proc is not None
            workers = [c for c in children(api.proc.proc.pid) if "spawn_main" in c]
            assert len(workers) == 2, workers
            device = await make_device()
            for value in range(6):
                resp = await post(api, device, {"metrics": {"temperature": float(value)}})
                assert resp.status_code == 202, resp.text
            api.proc.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(api.proc.proc.wait, 20) in (0, -signal.SIGTERM)
            assert children(api.proc.proc.pid) == []
        finally:
            api.proc.stop()
