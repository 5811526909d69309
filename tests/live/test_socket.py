"""WS /api/v1/ws with the real `websockets` client against two API processes."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import httpx
import pytest
from odmantic import AIOEngine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.auth import tokens
from app.auth.principal import Principal, PrincipalKind
from app.catalog import crud
from app.catalog.models import Device
from app.core.config import Settings
from app.core.models import utcnow
from tests.fixtures.catalog import grant, revoke
from tests.fixtures.identities import ApiSession, MakeUser, token_claims
from tests.fixtures.readings import MakeDevice, TestDevice
from tests.fixtures.servers import ManagedProcess, local_http
from tests.live.conftest import Api, authed, recv, send, until


def person(uid: str) -> Principal:
    return Principal(kind=PrincipalKind.USER, uid=uid)


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int | None, str]:
    """Read until the socket closes; its close code and reason."""

    async def drain() -> None:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()

    with pytest.raises(ConnectionClosed) as info:
        await drain()
    rcvd = info.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")


async def post(api: Api, device: TestDevice, body: dict[str, object]) -> httpx.Response:
    async with local_http(api.url, timeout=10) as http:
        return await http.post(
            f"/api/v1/devices/{device.id}/readings", json=body, headers=device.headers
        )


async def viewer(engine: AIOEngine, make_user: MakeUser, device: TestDevice) -> str:
    """A new user holding viewer on the device; their Firebase ID token."""
    user = await make_user()
    stored = await crud.get(engine, Device, device.id)
    await grant(engine, principal=person(user.uid), resource=stored, role="viewer")
    return user.id_token


class TestAuthentication:
    async def test_no_auth_message_closes_4401_after_the_timeout(self, api_a: Api) -> None:
        async with connect(api_a.ws) as ws:
            code, reason = await closed_with(ws)
        assert code == 4401
        assert "auth" in reason

    async def test_bad_token_closes_4401_with_a_reason(self, api_a: Api) -> None:
        async with connect(api_a.ws) as ws:
            await send(ws, type="auth", token="not-a-token")
            code, reason = await closed_with(ws)
        assert code == 4401
        assert reason

    async def test_first_message_must_be_auth(self, api_a: Api) -> None:
        async with connect(api_a.ws) as ws:
            await send(ws, type="subscribe", id="c1", channel="device.latest", device_id="x")
            code, _ = await closed_with(ws)
        assert code == 4401

    async def test_token_in_the_url_is_ignored(self, api_a: Api, make_user: MakeUser) -> None:
        user = await make_user()
        async with connect(api_a.ws + f"?token={user.id_token}") as ws:
            code, _ = await closed_with(ws)
        assert code == 4401  # still waits for the auth message

    async def test_reauth_notice_then_fresh_auth_extends_else_closes(
        self,
        api_a: Api,
        make_user: MakeUser,
        api_session: ApiSession,
        settings: Settings,
        opened: list[ClientConnection],
    ) -> None:
        user = await make_user()
        session = await api_session(user)
        claims = token_claims(session["access_token"])
        # A token of the same session that ends in 3 s (the session's absolute end).
        started = utcnow() - timedelta(seconds=settings.session_max_age_s - 3)
        short = tokens.issue(
            settings,
            typ="access",
            uid=user.uid,
            family_id=claims["fid"],
            session_started_at=started,
        )
        ws = await authed(api_a.ws, short.token, opened)
        notice = await until(ws, "reauth")
        assert notice["expires_at"]
        await send(ws, type="auth", token=session["access_token"])
        answer = await until(ws, "authenticated")
        assert answer["expires_at"] > notice["expires_at"]
        # The other socket, never refreshed, is closed at expiry.
        stale = await authed(api_a.ws, short.token, opened)
        await until(stale, "reauth")
        code, reason = await closed_with(stale, timeout=6)
        assert code == 4401
        assert "expired" in reason
        await send(ws, type="ping")
        assert (await until(ws, "pong"))["type"] == "pong"  # the refreshed one lives on


class TestSubscriptions:
    async def test_unseen_device_is_an_error_that_leaks_nothing(
        self,
        api_a: Api,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        user = await make_user()
        ws = await authed(api_a.ws, user.id_token, opened)
        await send(ws, type="subscribe", id="c1", channel="device.readings", device_id=device.id)
        hidden = await recv(ws)
        await send(ws, type="subscribe", id="c2", channel="device.readings", device_id="0" * 24)
        missing = await recv(ws)
        assert hidden["type"] == missing["type"] == "error"
        assert hidden["id"] == "c1"
        assert missing["id"] == "c2"
        assert hidden["code"] == missing["code"] == "not_found"
        assert hidden["message"] == missing["message"]
        assert (await post(api_a, device, {"metrics": {"temperature": 1}})).status_code == 202
        with pytest.raises(TimeoutError):
            await recv(ws, timeout=0.5)  # nothing of the hidden device arrives

    async def test_reading_posted_to_a_arrives_on_b(
        self,
        api_a: Api,
        api_b: Api,
        engine: AIOEngine,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        token = await viewer(engine, make_user, device)
        ws = await authed(api_b.ws, token, opened)
        await send(ws, type="subscribe", id="r", channel="device.readings", device_id=device.id)
        await send(ws, type="subscribe", id="l", channel="device.latest", device_id=device.id)
        await send(
            ws,
            type="subscribe",
            id="f",
            channel="device.readings",
            device_id=device.id,
            metrics=["humidity"],
        )
        for sub_id in ("r", "l", "f"):
            assert (await recv(ws)) == {
                "type": "subscribed",
                "id": sub_id,
                "channel": "device.latest" if sub_id == "l" else "device.readings",
                "device_id": device.id,
            }
        resp = await post(api_a, device, {"metrics": {"temperature": 21.5}})
        assert resp.status_code == 202
        got = {}
        for _ in range(2):
            message = await recv(ws)
            got[message["id"]] = message
        assert got["r"]["data"]["readings"][0]["metrics"] == {"temperature": 21.5}
        assert got["r"]["data"]["seq"]
        assert got["l"]["data"]["values"]["temperature"]["v"] == 21.5
        # The metrics filter left the third subscription out.
        resp = await post(api_a, device, {"metrics": {"humidity": 40}})
        ids = {(await recv(ws))["id"] for _ in range(3)}
        assert ids == {"r", "l", "f"}

    async def test_grant_removed_ends_the_subscription_within_5_s(
        self,
        api_a: Api,
        engine: AIOEngine,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        user = await make_user()
        stored = await crud.get(engine, Device, device.id)
        await grant(engine, principal=person(user.uid), resource=stored, role="viewer")
        ws = await authed(api_a.ws, user.id_token, opened)
        await send(ws, type="subscribe", id="c1", channel="device.readings", device_id=device.id)
        assert (await recv(ws))["type"] == "subscribed"
        await revoke(engine, principal=person(user.uid), resource=stored)
        ended = await until(ws, "error", timeout=5)
        assert ended["id"] == "c1"
        assert ended["code"] == "access_revoked"
        assert (await post(api_a, device, {"metrics": {"temperature": 2}})).status_code == 202
        with pytest.raises(TimeoutError):
            await recv(ws, timeout=0.5)

    async def test_limits_and_answers(
        self,
        api_a: Api,
        engine: AIOEngine,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        token = await viewer(engine, make_user, device)
        ws = await authed(api_a.ws, token, opened)
        for i in range(5):
            await send(
                ws, type="subscribe", id=f"s{i}", channel="device.latest", device_id=device.id
            )
            assert (await recv(ws))["type"] == "subscribed"
        await send(ws, type="subscribe", id="s5", channel="device.latest", device_id=device.id)
        assert (await recv(ws))["code"] == "too_many_subscriptions"
        await send(ws, type="subscribe", id="s0", channel="device.latest", device_id=device.id)
        assert (await recv(ws))["code"] in ("duplicate_id", "too_many_subscriptions")
        await send(ws, type="unsubscribe", id="s0")
        assert await recv(ws) == {"type": "unsubscribed", "id": "s0"}
        await send(ws, type="subscribe", id="x", channel="nope", device_id=device.id)
        assert (await recv(ws))["code"] == "bad_channel"
        # Connections per user: 3 at most (across processes).
        more = [await authed(api_a.ws, token, opened) for _ in range(2)]
        assert len(more) == 2
        async with connect(api_a.ws) as extra:
            await send(extra, type="auth", token=token)
            code, _ = await closed_with(extra)
        assert code == 4429

    async def test_too_many_messages_close_4429(
        self, api_a: Api, make_user: MakeUser, opened: list[ClientConnection]
    ) -> None:
        user = await make_user()
        ws = await authed(api_a.ws, user.id_token, opened)
        for _ in range(40):
            try:
                await send(ws, type="ping")
            except ConnectionClosed:
                break
        code, _ = await closed_with(ws)
        assert code == 4429


class TestBackPressure:
    async def test_slow_consumer_is_cut_off_and_delays_no_one(
        self,
        api_a: Api,
        api_b: Api,
        engine: AIOEngine,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        token = await viewer(engine, make_user, device)
        # The slow client buffers at most one message, has a tiny receive buffer, and stops
        # reading: the server's send queue fills.
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", int(api_b.url.rsplit(":", 1)[1])))
        # No compression: the test's repetitive events would otherwise shrink to nothing.
        slow = await connect(api_b.ws, sock=raw, max_queue=1, max_size=None, compression=None)
        opened.append(slow)
        await send(slow, type="auth", token=token)
        assert (await recv(slow))["type"] == "authenticated"
        await send(slow, type="subscribe", id="s", channel="device.readings", device_id=device.id)
        assert (await recv(slow))["type"] == "subscribed"
        fast = await authed(api_b.ws, token, opened)
        await send(fast, type="subscribe", id="f", channel="device.readings", device_id=device.id)
        assert (await recv(fast))["type"] == "subscribed"
        # ~600 kB an event (few readings, long strings: cheap to store, big to send): the
        # server's kernel send buffer (up to 4 MB here) is full within a dozen.
        big = {
            "readings": [
                {"metrics": {f"text_{i}": f"{j:03d}" + "x" * 250 for i in range(40)}}
                for j in range(60)
            ]
        }
        loop = asyncio.get_running_loop()
        for _ in range(40):
            started = loop.time()
            assert (await post(api_a, device, big)).status_code == 202
            assert loop.time() - started < 2.0  # ingest is not held up by the slow client
            got = 0
            while got < 60:  # the fast client gets every reading of every flush, at once
                message = await recv(fast, timeout=2)
                assert message["id"] == "f"
                got += len(message["data"]["readings"])
            if await cut_off(api_b) > 0:
                break
        assert await cut_off(api_b) == 1
        code, reason = await closed_with(slow, timeout=10)
        assert code == 1013
        assert "slow" in reason


async def cut_off(api: Api) -> float:
    """Sockets the process has cut off for reading too slowly (from /metrics)."""
    async with local_http(api.url) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith('sensorhub_live_disconnects_total{reason="slow_consumer"}'):
            return float(line.split()[-1])
    return 0.0


class TestRedisRestart:
    async def test_degraded_then_resumed(
        self,
        api_a: Api,
        api_b: Api,
        engine: AIOEngine,
        live_redis: ManagedProcess,
        make_user: MakeUser,
        make_device: MakeDevice,
        opened: list[ClientConnection],
    ) -> None:
        device = await make_device()
        token = await viewer(engine, make_user, device)
        ws = await authed(api_b.ws, token, opened)
        await send(ws, type="subscribe", id="r", channel="device.readings", device_id=device.id)
        assert (await recv(ws))["type"] == "subscribed"
        live_redis.stop()
        degraded = await until(ws, "degraded", timeout=10)
        assert degraded["since"]
        live_redis.start()
        resumed = await until(ws, "resumed", timeout=15)
        assert resumed["since"] == degraded["since"]
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the publisher's pool reconnects too
            resp = await post(api_a, device, {"metrics": {"temperature": 5}})
            assert resp.status_code == 202
            try:
                message = await recv(ws, timeout=1)
                break
            except TimeoutError:
                assert asyncio.get_running_loop().time() < deadline
        assert message["data"]["readings"][0]["metrics"]["temperature"] == 5
        async with local_http(api_b.url) as http:
            ready = (await http.get("/ready")).json()
        assert ready["checks"]["live"] == "ok"


class TestFolderDevices:
    async def test_current_statuses_first_then_changes(
        self, api_a: Api, make_user: MakeUser, opened: list[ClientConnection]
    ) -> None:
        user = await make_user()
        async with local_http(f"{api_a.url}/api/v1", timeout=10) as http:
            folder = await http.post("/folders", json={"name": "Site"}, headers=user.headers)
            assert folder.status_code == 201, folder.text
            folder_id = folder.json()["id"]
            product = await http.post(
                "/products",
                json={"name": "P", "sku": "SKU-FD", "telemetry": {"metrics": [{"name": "t"}]}},
                headers=user.headers,
            )
            assert product.status_code == 201, product.text
            made = await http.post(
                "/devices",
                json={
                    "name": "D",
                    "serial": "SN-FD",
                    "product_id": product.json()["id"],
                    "folder_id": folder_id,
                },
                headers=user.headers,
            )
            assert made.status_code == 201, made.text
            device_id, key = made.json()["id"], made.json()["key"]
            ws = await authed(api_a.ws, user.id_token, opened)
            await send(ws, type="subscribe", id="f", channel="folder.devices", folder_id=folder_id)
            assert (await recv(ws))["type"] == "subscribed"
            first = await recv(ws)
            assert first["data"]["device_id"] == device_id
            assert first["data"]["status"] == "offline"  # never seen
            beat = await http.post(
                f"/devices/{device_id}/heartbeat",
                json={"status": "error"},
                headers={"X-Device-Key": key},
            )
            assert beat.status_code == 200, beat.text
            changed = await until(ws, "event", timeout=5)
            assert changed["id"] == "f"
            assert changed["data"] == {**changed["data"], "device_id": device_id, "status": "error"}
