"""GET /api/v1/devices/{id}/readings/stream: permissions, live events, Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from odmantic import AIOEngine

from app.catalog import crud
from app.catalog.models import Device
from tests.fixtures.catalog import grant, revoke
from tests.fixtures.identities import MakeUser, bearer
from tests.fixtures.readings import MakeDevice, TestDevice
from tests.fixtures.servers import local_http
from tests.live.conftest import Api
from tests.live.test_socket import person, post, viewer


async def frames(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """SSE frames as {"id", "event", "data"} (comments and retry lines skipped)."""
    frame: dict[str, Any] = {}
    async for line in lines:
        if not line:
            if "data" in frame:
                yield frame
            frame = {}
        elif line.startswith("id: "):
            frame["id"] = line[4:]
        elif line.startswith("event: "):
            frame["event"] = line[7:]
        elif line.startswith("data: "):
            frame["data"] = json.loads(line[6:])


async def take(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], count: int
) -> list[dict[str, Any]]:
    """The first `count` frames of a stream (within 10 s)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(10), http.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for frame in frames(resp.aiter_lines()):
            got.append(frame)
            if len(got) == count:
                break
    return got


async def first_frame_while_posting(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    *,
    api: Api,
    device: TestDevice,
    body: dict[str, object],
) -> dict[str, Any]:
    """The stream's first frame, posting `body` as the device (through `api`) until it comes:
    the stream subscribes only after sending its headers."""
    reader = asyncio.create_task(take(http, url, headers, 1))
    deadline = asyncio.get_running_loop().time() + 5
    while not reader.done():
        assert (await post(api, device, body)).status_code == 202
        await asyncio.sleep(0.1)
        assert asyncio.get_running_loop().time() < deadline
    return (await reader)[0]


@dataclass
class Watched:
    """A device, and the headers of a user holding viewer on it."""

    device: TestDevice
    headers: dict[str, str]

    @property
    def url(self) -> str:
        """The device's readings stream."""
        return f"/api/v1/devices/{self.device.id}/readings/stream"


@pytest.fixture
async def watched(engine: AIOEngine, make_user: MakeUser, make_device: MakeDevice) -> Watched:
    """A new device and a new user who may view it."""
    device = await make_device()
    return Watched(device, bearer(await viewer(engine, make_user, device)))


class TestStream:
    async def test_unseen_device_is_404_problem(
        self, api_b: Api, make_user: MakeUser, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        user = await make_user()
        async with local_http(api_b.url) as http:
            hidden = await http.get(
                f"/api/v1/devices/{device.id}/readings/stream", headers=bearer(user.id_token)
            )
            missing = await http.get(
                f"/api/v1/devices/{'0' * 24}/readings/stream", headers=bearer(user.id_token)
            )
        assert hidden.status_code == missing.status_code == 404
        assert hidden.headers["content-type"] == "application/problem+json"
        assert hidden.json()["detail"] == missing.json()["detail"]

    async def test_live_then_resume_from_last_event_id(
        self, api_a: Api, api_b: Api, watched: Watched
    ) -> None:
        device, url, headers = watched.device, watched.url, watched.headers
        async with local_http(api_b.url, timeout=10) as http:
            first = await first_frame_while_posting(
                http, url, headers, api=api_a, device=device, body={"metrics": {"temperature": 1}}
            )
            assert first["event"] == "readings"
            assert first["id"]
            # Posted while no stream is open: the buffer keeps them for the resume.
            for value in (10, 11, 12):
                resp = await post(api_a, device, {"metrics": {"temperature": value}})
                assert resp.status_code == 202
            resumed = await take(http, url, {**headers, "Last-Event-ID": first["id"]}, 3)
        values = [f["data"]["readings"][-1]["metrics"]["temperature"] for f in resumed[-3:]]
        assert values == [10, 11, 12]
        ids = [f["id"] for f in resumed]
        assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
        assert first["id"] not in ids

    async def test_bad_last_event_id_is_422(self, api_b: Api, watched: Watched) -> None:
        async with local_http(api_b.url) as http:
            resp = await http.get(watched.url, headers={**watched.headers, "Last-Event-ID": "nope"})
        assert resp.status_code == 422
        assert resp.headers["content-type"] == "application/problem+json"

    async def test_metrics_filter_keeps_only_the_named_metrics(
        self, api_a: Api, api_b: Api, watched: Watched
    ) -> None:
        body: dict[str, object] = {"metrics": {"temperature": 20, "humidity": 40}}
        async with local_http(api_b.url, timeout=10) as http:
            frame = await first_frame_while_posting(
                http,
                f"{watched.url}?metrics=humidity,pressure",
                watched.headers,
                api=api_a,
                device=watched.device,
                body=body,
            )
        assert frame["data"]["readings"][-1]["metrics"] == {"humidity": 40}

    @pytest.mark.parametrize(
        "metrics",
        [
            "temperature, humidity",  # a space
            "temperature,,humidity",  # an empty name
            "1st",  # not a metric name
            "t" * 65,  # a name too long
            ",".join(f"m{i}" for i in range(51)),  # more than 50
        ],
    )
    async def test_malformed_metrics_filter_is_422(
        self, api_b: Api, watched: Watched, metrics: str
    ) -> None:
        async with local_http(api_b.url) as http:
            resp = await http.get(watched.url, params={"metrics": metrics}, headers=watched.headers)
        assert resp.status_code == 422
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["errors"][0]["loc"] == ["query", "metrics"]

    async def test_grant_removed_ends_the_stream(
        self, api_b: Api, engine: AIOEngine, make_user: MakeUser, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        user = await make_user()
        stored = await crud.get(engine, Device, device.id)
        await grant(engine, principal=person(user.uid), resource=stored, role="viewer")
        url = f"/api/v1/devices/{device.id}/readings/stream"
        async with local_http(api_b.url, timeout=10) as http:
            reader = asyncio.create_task(take(http, url, bearer(user.id_token), 1))
            await asyncio.sleep(0.2)
            await revoke(engine, principal=person(user.uid), resource=stored)
            ended = (await reader)[0]
        assert ended["event"] == "error"
        assert ended["data"]["code"] == "access_revoked"
