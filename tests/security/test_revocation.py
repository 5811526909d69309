"""Rights cached by one API process still end at once when another process takes them away.

Two API processes share MongoDB and Redis: process A (the shared app) makes each change, and
process B (uvicorn in a process of its own), which has just served the user (so its caches
hold the session, the grants and the device's path), must refuse the user's next request
within 100 ms.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI
from firebase_admin import auth
from odmantic import AIOEngine
from websockets.asyncio.client import connect

from app.core.services import services_of
from tests.fixtures.catalog import grant, new_device, new_folder, new_product, user_principal
from tests.fixtures.catalog_http import Viewer, new_viewer, principal_of, session_of
from tests.fixtures.identities import EmulatorRest, MakeUser, bearer, next_second_after
from tests.live.conftest import Api, recv, send

API = "/api/v1"
WITHIN_S = 0.1


@pytest.fixture
async def viewer(engine: AIOEngine, client: httpx.AsyncClient, make_user: MakeUser) -> Viewer:
    return await new_viewer(engine, client, make_user)


async def refused_within(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], *, refused: int
) -> float:
    """Seconds until `path` answers `refused` (polling without pause); fails past the limit."""
    started = time.monotonic()
    while True:
        resp = await http.get(path, headers=headers)
        elapsed = time.monotonic() - started
        if resp.status_code == refused:
            return elapsed
        assert resp.status_code == 200, resp.text
        assert elapsed <= WITHIN_S, f"still {resp.status_code} after {elapsed * 1000:.0f} ms"


async def served(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    """The request succeeds (twice, so every cache on the way is warm)."""
    for _ in range(2):
        resp = await http.get(path, headers=headers)
        assert resp.status_code == 200, resp.text


class TestSessionChangesReachTheOtherProcess:
    async def test_logout(
        self, client: httpx.AsyncClient, there: httpx.AsyncClient, viewer: Viewer
    ) -> None:
        await served(there, viewer.latest, viewer.headers)
        resp = await client.post(f"{API}/auth/logout", json={"refresh_token": viewer.refresh_token})
        assert resp.status_code == 204, resp.text
        assert await refused_within(there, viewer.latest, viewer.headers, refused=401) <= WITHIN_S

    async def test_disabling_the_user(
        self,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        viewer: Viewer,
        master_headers: dict[str, str],
    ) -> None:
        await served(there, viewer.latest, viewer.headers)
        resp = await client.patch(
            f"{API}/users/{viewer.user.uid}", json={"disabled": True}, headers=master_headers
        )
        assert resp.status_code == 200, resp.text
        elapsed = await refused_within(there, viewer.latest, viewer.headers, refused=403)
        assert elapsed <= WITHIN_S

    async def test_removing_the_admin_claim(
        self,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        make_user: MakeUser,
        master_headers: dict[str, str],
    ) -> None:
        admin = await make_user(admin=True)
        headers = bearer((await session_of(client, admin))["access_token"])
        await served(there, f"{API}/users", headers)
        resp = await client.patch(
            f"{API}/users/{admin.uid}", json={"admin": False}, headers=master_headers
        )
        assert resp.status_code == 200, resp.text
        assert await refused_within(there, f"{API}/users", headers, refused=403) <= WITHIN_S


class TestCatalogChangesReachTheOtherProcess:
    async def test_removing_the_grant(
        self,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        viewer: Viewer,
        master_headers: dict[str, str],
    ) -> None:
        await served(there, viewer.latest, viewer.headers)
        resp = await client.delete(
            f"{API}/folders/{viewer.parent.id}/permissions/{viewer.user.uid}",
            headers=master_headers,
        )
        assert resp.status_code == 204, resp.text
        assert await refused_within(there, viewer.latest, viewer.headers, refused=404) <= WITHIN_S

    async def test_deleting_the_device(
        self,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        viewer: Viewer,
        master_headers: dict[str, str],
    ) -> None:
        await served(there, viewer.latest, viewer.headers)
        resp = await client.delete(f"{API}/devices/{viewer.device.id}", headers=master_headers)
        assert resp.status_code == 204, resp.text
        assert await refused_within(there, viewer.latest, viewer.headers, refused=404) <= WITHIN_S

    # The device itself, or the folder below the granted one that holds it, moves elsewhere:
    # either takes the device out of the grant's reach.
    @pytest.mark.parametrize(
        ("what", "field"), [("devices", "folder_id"), ("folders", "parent_id")]
    )
    async def test_moving_it_out_of_the_granted_folder(
        self,
        what: str,
        field: str,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        viewer: Viewer,
        master_headers: dict[str, str],
        engine: AIOEngine,
    ) -> None:
        moved = viewer.device.id if what == "devices" else viewer.device.folder_id
        elsewhere = await new_folder(engine, owner=user_principal())
        await served(there, viewer.latest, viewer.headers)
        resp = await client.patch(
            f"{API}/{what}/{moved}", json={field: str(elsewhere.id)}, headers=master_headers
        )
        assert resp.status_code == 200, resp.text
        assert await refused_within(there, viewer.latest, viewer.headers, refused=404) <= WITHIN_S

    async def test_a_new_grant_works_at_once(
        self,
        client: httpx.AsyncClient,
        there: httpx.AsyncClient,
        viewer: Viewer,
        master_headers: dict[str, str],
        engine: AIOEngine,
    ) -> None:
        # Cached grants only ever allow: a grant nobody announced is found on the refusal path.
        other = await new_folder(engine, owner=user_principal())
        product = await new_product(engine, owner=user_principal(), folder=other)
        device, _ = await new_device(engine, owner=user_principal(), product=product, folder=other)
        path = f"{API}/devices/{device.id}/readings/latest"
        await served(there, viewer.latest, viewer.headers)
        assert (await there.get(path, headers=viewer.headers)).status_code == 404
        await grant(engine, principal=principal_of(viewer.user), resource=other, role="viewer")
        assert (await there.get(path, headers=viewer.headers)).status_code == 200


class TestClaimsFirstSeenOnASocket:
    async def test_an_admin_claim_removed_in_firebase_ends_the_admin_sessions_everywhere(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        process_b: Api,
        make_user: MakeUser,
        emulator_rest: EmulatorRest,
    ) -> None:
        """The claim is removed in Firebase (not through the API); the first fresh ID token
        that shows it arrives on a socket of process B, and the admin's session in process A
        loses the admin role with it."""
        admin = await make_user(admin=True)
        headers = bearer((await session_of(client, admin))["access_token"])
        await served(client, f"{API}/users", headers)
        firebase_app = services_of(app).firebase.app
        await asyncio.to_thread(auth.set_custom_user_claims, admin.uid, None, app=firebase_app)
        await next_second_after(admin.id_token)  # the new token is issued after the old one
        fresh = await emulator_rest.sign_in(email=admin.email, password=admin.password)
        async with connect(process_b.ws) as ws:
            await send(ws, type="auth", token=fresh["idToken"])
            assert (await recv(ws))["type"] == "authenticated"
        assert await refused_within(client, f"{API}/users", headers, refused=403) <= WITHIN_S
