"""Latest values skip the router: its answers must be the router's, case by case.

The shared app serves `GET .../readings/latest` with a Bearer token through
`app.readings.latest_fastpath`; `routed` (an app on the same servers and database, built without
the fast routes) sends every request through FastAPI and the documented route. Each case is
sent to both and the answers compared: status, every header (values that change from one
request to the next masked), and the body's bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI
from odmantic import AIOEngine

from app.auth import tokens
from app.core.config import Settings
from app.core.middleware import RequestMiddleware
from app.core.models import utcnow
from app.core.services import services_of
from app.ratelimit import policies
from app.readings.latest_fastpath import LatestRoute
from tests.fixtures.catalog import new_device, new_product, user_principal
from tests.fixtures.catalog_http import Viewer, new_viewer
from tests.fixtures.identities import MakeUser, bearer

API = "/api/v1"
# Header values that differ between two requests however they are served.
VOLATILE = {"x-request-id", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"}


@pytest.fixture
async def viewer(engine: AIOEngine, client: httpx.AsyncClient, make_user: MakeUser) -> Viewer:
    """A viewer by inherited grant of a device that has sent a reading."""
    viewer = await new_viewer(engine, client, make_user)
    resp = await client.post(
        f"{API}/devices/{viewer.device.id}/readings",
        json={"metrics": {"temperature": 21.5, "humidity": 45}},
        headers={"X-Device-Key": viewer.device_key},
    )
    assert resp.status_code == 202, resp.text
    return viewer


def answer(resp: httpx.Response) -> dict[str, Any]:
    """What a client sees, with the values that change between requests masked."""
    headers = []
    for name, value in resp.headers.multi_items():
        if name in VOLATILE:
            value = "*"
        elif name == "ratelimit":
            value = re.sub(r";r=\d+;t=\d+", ";r=*;t=*", value)
        headers.append((name, value))
    body = resp.content
    if resp.status_code == 429:  # seconds until a request is admitted again
        body = re.sub(rb'"retry_after":\d+', b'"retry_after":*', body)
        body = re.sub(rb"retry in \d+ s", b"retry in N s", body)
    return {"status": resp.status_code, "headers": headers, "body": body}


Same = Callable[..., Awaitable[None]]


@pytest.fixture
def same(client: httpx.AsyncClient, routed: httpx.AsyncClient) -> Same:
    """`await same(path, headers, expected=200)`: the same request to the fast app and the
    routed one gets the same answer, with the `expected` status."""

    async def compare(path: str, headers: dict[str, str], *, expected: int) -> None:
        fast = answer(await client.get(path, headers=headers))
        slow = answer(await routed.get(path, headers=headers))
        assert fast == slow
        assert fast["status"] == expected, fast

    return compare


class TestSameAnswers:
    async def test_viewer_by_inherited_grant(
        self, same: Same, client: httpx.AsyncClient, viewer: Viewer
    ) -> None:
        await same(viewer.latest, viewer.headers, expected=200)
        body = (await client.get(viewer.latest, headers=viewer.headers)).json()
        assert set(body["metrics"]) == {"temperature", "humidity"}

    async def test_firebase_id_token(self, same: Same, viewer: Viewer) -> None:
        await same(viewer.latest, viewer.user.headers, expected=200)

    async def test_master_token(
        self, same: Same, viewer: Viewer, master_headers: dict[str, str]
    ) -> None:
        await same(viewer.latest, master_headers, expected=200)

    async def test_device_without_readings(
        self, same: Same, engine: AIOEngine, master_headers: dict[str, str]
    ) -> None:
        product = await new_product(engine, owner=user_principal())
        device, _ = await new_device(engine, owner=user_principal(), product=product)
        await same(f"{API}/devices/{device.id}/readings/latest", master_headers, expected=200)

    @pytest.mark.parametrize("token", ["not-a-token", "a.b.c", "dk_" + "x" * 40])
    async def test_bad_token(self, same: Same, viewer: Viewer, token: str) -> None:
        await same(viewer.latest, bearer(token), expected=401)

    async def test_expired_token(self, same: Same, viewer: Viewer, settings: Settings) -> None:
        access = viewer.headers["Authorization"].split()[1]
        claims = tokens.decode(settings, access, typ=tokens.ACCESS)
        expired = tokens.issue(
            settings,
            typ=tokens.ACCESS,
            uid=viewer.user.uid,
            family_id=claims.family_id,
            session_started_at=utcnow() - timedelta(seconds=settings.session_max_age_s + 60),
        )
        await same(viewer.latest, bearer(expired.token), expected=401)

    async def test_no_access(self, same: Same, viewer: Viewer, make_user: MakeUser) -> None:
        stranger = await make_user()
        await same(viewer.latest, stranger.headers, expected=404)

    async def test_unknown_device(self, same: Same, viewer: Viewer) -> None:
        await same(f"{API}/devices/{ObjectId()}/readings/latest", viewer.headers, expected=404)

    async def test_revoked_grant(
        self,
        same: Same,
        client: httpx.AsyncClient,
        viewer: Viewer,
        master_headers: dict[str, str],
    ) -> None:
        await same(viewer.latest, viewer.headers, expected=200)
        resp = await client.delete(
            f"{API}/folders/{viewer.parent.id}/permissions/{viewer.user.uid}",
            headers=master_headers,
        )
        assert resp.status_code == 204, resp.text
        await same(viewer.latest, viewer.headers, expected=404)

    async def test_logged_out_session(
        self, same: Same, client: httpx.AsyncClient, viewer: Viewer
    ) -> None:
        await same(viewer.latest, viewer.headers, expected=200)
        resp = await client.post(f"{API}/auth/logout", json={"refresh_token": viewer.refresh_token})
        assert resp.status_code == 204, resp.text
        await same(viewer.latest, viewer.headers, expected=401)

    async def test_over_the_user_limit(
        self,
        client: httpx.AsyncClient,
        routed: httpx.AsyncClient,
        app: FastAPI,
        routed_app: FastAPI,
        viewer: Viewer,
        make_user: MakeUser,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        for each in (app, routed_app):
            limiter_policies = services_of(each).limiter.policies
            one = dataclasses.replace(limiter_policies[policies.USER], limit=1)
            monkeypatch.setitem(limiter_policies, policies.USER, one)
        answers = []
        for http in (client, routed):
            user = await make_user()  # its own counter: one request admitted, then 429
            for _ in range(2):
                resp = await http.get(viewer.latest, headers=user.headers)
            answers.append(answer(resp))
        assert answers[0] == answers[1]
        assert answers[0]["status"] == 429

    @pytest.mark.parametrize(
        "query", ["?metrics=temperature", "?metrics=no%20such", "?other=1", "?"]
    )
    async def test_query_strings(self, same: Same, viewer: Viewer, query: str) -> None:
        expected = 422 if "%20" in query else 200
        await same(viewer.latest + query, viewer.headers, expected=expected)


def latest_route(app: FastAPI) -> LatestRoute:
    """The shared app's fast route for latest values."""
    [middleware] = [m for m in app.user_middleware if m.cls is RequestMiddleware]
    [route] = [r for r in middleware.kwargs["fast_routes"] if isinstance(r, LatestRoute)]
    return route


def scope(
    path: str = f"{API}/devices/{'a' * 24}/readings/latest",
    *,
    method: str = "GET",
    query: bytes = b"",
    headers: tuple[tuple[bytes, bytes], ...] = ((b"authorization", b"Bearer abc"),),
    root_path: str = "",
) -> dict[str, Any]:
    """An HTTP scope as uvicorn makes it."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": list(headers),
        "root_path": root_path,
    }


class TestWhatTheFastRouteTakes:
    def test_a_bearer_token(self, app: FastAPI) -> None:
        assert latest_route(app)(scope()) is not None
        assert latest_route(app)(scope(headers=((b"authorization", b"bearer abc"),))) is not None

    @pytest.mark.parametrize(
        "odd",
        [
            {"method": "HEAD"},
            {"query": b"metrics=temperature"},
            {"path": f"{API}/devices/{'a' * 24}/readings/latest/"},
            {"path": f"{API}/devices/{'A' * 24}/readings/latest"},
            {"path": f"{API}/devices/{'a' * 23}/readings/latest"},
            {"root_path": "/mounted"},
            {"headers": ()},
            {"headers": ((b"authorization", b"Basic abc"),)},
            {"headers": ((b"authorization", b"Bearer dk_abc"),)},
            {"headers": ((b"authorization", b"Bearer abc"), (b"x-device-key", b"dk_abc"))},
        ],
        ids=str,
    )
    def test_anything_else_goes_to_the_router(self, app: FastAPI, odd: dict[str, Any]) -> None:
        assert latest_route(app)(scope(**odd)) is None
