"""The attacks of the hardening review, driven over HTTP against the real stack.

Each was possible before: one device key filling a process's memory with metric names, a
session that outlived its account in Firebase, an admin made from an unverified address, a
flood of bad credentials that never met a 429, share invitations used as a spam relay, and a
folder chain deep enough to make every move cost depth².
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from firebase_admin import auth
from odmantic import AIOEngine

from app.auth import sessions, tokens
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.models import utcnow
from app.core.services import services_of
from tests.fixtures.catalog import MASTER, new_folder
from tests.fixtures.catalog_http import principal_of, signed_in
from tests.fixtures.identities import TEST_MASTER_TOKEN, MakeUser, bearer
from tests.fixtures.readings import MakeDevice
from tests.security.conftest import HardenedApp, client_from
from tests.users.test_make_admin import run_script

API = "/api/v1"
MASTER_HEADERS = bearer(TEST_MASTER_TOKEN)


class TestMetricFlood:
    """Item 1: one device key cannot make a device hold unbounded metric names."""

    async def test_new_names_past_the_cap_are_refused_and_latest_stays_bounded(
        self, hardened_app: HardenedApp, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()  # the product allows unknown metrics
        async with (
            hardened_app(readings_max_metrics_per_device=10) as app,
            client_from(app) as http,
        ):
            url = f"{API}/devices/{device.id}/readings"
            batch = {
                "readings": [{"metrics": {f"m{i}_{j}": 1 for j in range(4)}} for i in range(6)]
            }
            resp = await http.post(url, json=batch, headers=device.headers)
            assert resp.status_code == 202, resp.text
            answer = resp.json()
            assert answer["accepted"] == 2  # 8 names; a third reading would make 12
            assert {e["reason"] for e in answer["errors"]} == {"too-many-metrics"}
            assert {e["index"] for e in answer["errors"]} == {2, 3, 4, 5}
            known = await http.post(url, json={"metrics": {"m0_0": 2}}, headers=device.headers)
            assert known.json()["accepted"] == 1  # names it already has still work
            refused = await http.post(url, json={"metrics": {"fresh": 1}}, headers=device.headers)
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["type"] == "too-many-metrics"
        latest = await mongo_db["device_latest"].find_one({"_id": device.id})
        assert len(latest["m"]) <= 10
        assert latest["known_count"] <= 10

    async def test_concurrent_requests_cannot_pass_the_cap_together(
        self, hardened_app: HardenedApp, make_device: MakeDevice, mongo_db: MongoDatabase
    ) -> None:
        device = await make_device()
        async with (
            hardened_app(readings_max_metrics_per_device=10) as app,
            client_from(app) as http,
        ):
            url = f"{API}/devices/{device.id}/readings"
            answers = await asyncio.gather(
                *(
                    http.post(url, json={"metrics": {f"c{i}": 1}}, headers=device.headers)
                    for i in range(25)
                )
            )
        accepted = [a for a in answers if a.status_code == 202]
        assert len(accepted) == 10
        assert all(a.status_code == 422 for a in answers if a not in accepted)
        latest = await mongo_db["device_latest"].find_one({"_id": device.id})
        assert len(latest["known"]) == 10

    async def test_aggregate_answer_size_is_capped(
        self, hardened_app: HardenedApp, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        async with hardened_app(readings_aggregate_max_cells=100) as app, client_from(app) as http:
            resp = await http.get(
                f"{API}/devices/{device.id}/readings/aggregate",
                params={"interval": "5m", "metrics": "temperature,humidity"},  # 288 x 2
                headers=MASTER_HEADERS,
            )
        assert resp.status_code == 422
        assert "READINGS_AGGREGATE_MAX_CELLS" in resp.json()["detail"]


class TestRefreshAfterDisable:
    """Item 3: API sessions end when Firebase ends the account's rights."""

    async def session(self, http: httpx.AsyncClient, make_user: MakeUser, **kw: Any) -> Any:
        user = await make_user(**kw)
        resp = await http.post(f"{API}/auth/session", json={"id_token": user.id_token})
        assert resp.status_code == 200, resp.text
        return user, resp.json()

    async def test_disabled_in_firebase_ends_the_session(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user, tokens_ = await self.session(client, make_user)
        await asyncio.to_thread(
            auth.update_user, user.uid, disabled=True, app=services_of(app).firebase.app
        )
        resp = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": tokens_["refresh_token"]}
        )
        assert resp.status_code == 401
        assert "disabled" in resp.json()["detail"]
        # The whole session ended: its access token stops too.
        me = await client.get(f"{API}/auth/me", headers=bearer(tokens_["access_token"]))
        assert me.status_code == 401

    async def test_deleted_in_firebase_ends_the_session(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user, tokens_ = await self.session(client, make_user)
        await asyncio.to_thread(auth.delete_user, user.uid, app=services_of(app).firebase.app)
        resp = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": tokens_["refresh_token"]}
        )
        assert resp.status_code == 401

    async def test_signed_out_everywhere_ends_the_session(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user, tokens_ = await self.session(client, make_user)
        # Firebase records revocation in whole seconds: revoke in a later second than sign-in.
        started = int(time.time())
        while int(time.time()) <= started:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(
            auth.revoke_refresh_tokens, user.uid, app=services_of(app).firebase.app
        )
        resp = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": tokens_["refresh_token"]}
        )
        assert resp.status_code == 401
        assert "signed out everywhere" in resp.json()["detail"]

    async def test_removed_admin_claim_stops_admin_rights_at_the_next_refresh(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        user, tokens_ = await self.session(client, make_user, admin=True)
        users = await client.get(f"{API}/users", headers=bearer(tokens_["access_token"]))
        assert users.status_code == 200
        await asyncio.to_thread(
            auth.set_custom_user_claims, user.uid, None, app=services_of(app).firebase.app
        )
        resp = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": tokens_["refresh_token"]}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["user"]["is_admin"] is False
        users = await client.get(f"{API}/users", headers=bearer(resp.json()["access_token"]))
        assert users.status_code == 403

    async def test_rotation_cannot_extend_a_session_past_its_maximum_age(
        self,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        settings: Settings,
        engine: AIOEngine,
    ) -> None:
        user, _ = await self.session(client, make_user)
        # A refresh token exactly as the API would have issued it at a sign-in just over
        # SESSION_MAX_AGE_S ago.
        started = utcnow() - timedelta(seconds=settings.session_max_age_s + 5)
        family = tokens.new_family_id()
        old = tokens.issue(
            settings,
            typ=tokens.REFRESH,
            uid=user.uid,
            family_id=family,
            session_started_at=started,
        )
        await sessions.record(
            engine, jti=old.jti, family_id=family, uid=user.uid, expires_at=utcnow()
        )
        resp = await client.post(f"{API}/auth/refresh", json={"refresh_token": old.token})
        assert resp.status_code == 401
        fresh = started + timedelta(seconds=settings.session_max_age_s - 60)
        late = tokens.issue(
            settings, typ=tokens.REFRESH, uid=user.uid, family_id=family, session_started_at=fresh
        )
        # Issued now, it still expires when the session does, not a full refresh TTL later.
        assert late.expires_at <= fresh + timedelta(seconds=settings.session_max_age_s)


class TestUnverifiedAdmin:
    """Item 2: `make_admin.py` never promotes an address its owner has not verified."""

    async def test_refused_with_a_reason_and_nothing_changes(
        self, client: httpx.AsyncClient, make_user: MakeUser, settings: Settings
    ) -> None:
        user = await make_user(email_verified=False)
        assert (await client.get(f"{API}/auth/me", headers=user.headers)).status_code == 200
        code, _, err = await run_script(settings, "--email", user.email)
        assert code == 2
        assert "not verified" in err
        me = await client.get(f"{API}/auth/me", headers=user.headers)
        assert me.json()["is_admin"] is False
        assert (await client.get(f"{API}/users", headers=user.headers)).status_code == 403


class TestBadCredentialFlood:
    """Item 5: failed authentications are counted per client address; a flood gets 429."""

    async def test_random_device_keys_and_tokens_meet_a_429(
        self, hardened_app: HardenedApp, make_device: MakeDevice
    ) -> None:
        device = await make_device()
        async with hardened_app(rate_limit_auth_failures_limit=5) as app:
            async with client_from(app, "198.51.100.61") as attacker:
                url = f"{API}/devices/{device.id}/readings/latest"
                statuses = []
                for i in range(8):
                    headers = (
                        {"X-Device-Key": f"dk_{uuid.uuid4().hex}{uuid.uuid4().hex}"}
                        if i % 2
                        else bearer(f"not-a-token-{i}")
                    )
                    statuses.append((await attacker.get(url, headers=headers)).status_code)
                assert statuses[:5] == [401] * 5
                assert statuses[5:] == [429] * 3
                blocked = await attacker.get(url, headers={"X-Device-Key": device.key})
                assert blocked.status_code == 429  # the address waits, whatever it sends
                assert int(blocked.headers["Retry-After"]) >= 1
            async with client_from(app, "198.51.100.62") as someone_else:
                ok = await someone_else.get(url, headers={"X-Device-Key": device.key})
                assert ok.status_code == 200

    async def test_a_real_key_posting_to_other_devices_is_counted(
        self, hardened_app: HardenedApp, make_device: MakeDevice
    ) -> None:
        mine, other = await make_device(), await make_device()
        async with (
            hardened_app(rate_limit_device_limit=3) as app,
            client_from(app, "198.51.100.63") as http,
        ):
            statuses = [
                (
                    await http.post(
                        f"{API}/devices/{other.id}/readings",
                        json={"metrics": {"temperature": 1}},
                        headers=mine.headers,
                    )
                ).status_code
                for _ in range(5)
            ]
        assert statuses == [404, 404, 404, 429, 429]


class TestInviteRelay:
    """Item 9: sharing by email cannot send mail to several or hostile recipients."""

    async def test_several_recipients_in_one_path_are_refused(
        self,
        client: httpx.AsyncClient,
        make_user: MakeUser,
        engine: AIOEngine,
        mongo_db: MongoDatabase,
    ) -> None:
        alice = await signed_in(make_user, client)
        folder = await new_folder(engine, owner=principal_of(alice))
        for target in ("a@x.example.com,b@y.example.com", "a@x.example.com b@y.example.com"):
            resp = await client.put(
                f"{API}/folders/{folder.id}/permissions/{target}",
                json={"role": "viewer"},
                headers=alice.headers,
            )
            assert resp.status_code == 422, resp.text
            assert resp.json()["type"] == "/problems/invalid-email"
        assert await mongo_db.invites.count_documents({"resource_id": str(folder.id)}) == 0
        queued = mongo_db.email_outbox.find({"template": "share_invite"}, {"context": 1})
        assert all(
            e["context"]["resource_id"] != str(folder.id) for e in await queued.to_list(None)
        )

    async def test_invitations_per_user_are_limited(
        self, hardened_app: HardenedApp, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        async with hardened_app(rate_limit_invites_limit=2) as app, client_from(app) as http:
            alice = await signed_in(make_user, http)
            folder = await new_folder(services_of(app).engine, owner=principal_of(alice))
            statuses = [
                (
                    await http.put(
                        f"{API}/folders/{folder.id}/permissions/invitee{i}@example.com",
                        json={"role": "viewer"},
                        headers=alice.headers,
                    )
                ).status_code
                for i in range(3)
            ]
        assert statuses == [200, 200, 429]
        assert await mongo_db.invites.count_documents({"resource_id": str(folder.id)}) == 2


class TestDeepFolderChain:
    """Item 10: folder depth is capped, and moves leave no cycle."""

    async def test_depth_cap_on_create_and_move(self, hardened_app: HardenedApp) -> None:
        async with (
            hardened_app(folder_max_depth=3) as app,
            client_from(app) as http,
        ):
            parent = None
            for _ in range(3):
                resp = await http.post(
                    f"{API}/folders",
                    json={"name": uuid.uuid4().hex, "parent_id": parent},
                    headers=MASTER_HEADERS,
                )
                assert resp.status_code == 201, resp.text
                parent = resp.json()["id"]
            too_deep = await http.post(
                f"{API}/folders",
                json={"name": "four", "parent_id": parent},
                headers=MASTER_HEADERS,
            )
            assert too_deep.status_code == 422
            assert too_deep.json()["type"] == "/problems/folder-too-deep"
            # A two-level subtree moved under a depth-2 folder would reach depth 4.
            top = await http.post(f"{API}/folders", json={"name": "t"}, headers=MASTER_HEADERS)
            child = await http.post(
                f"{API}/folders",
                json={"name": "c", "parent_id": top.json()["id"]},
                headers=MASTER_HEADERS,
            )
            assert child.status_code == 201
            second = (await http.get(f"{API}/folders/{parent}", headers=MASTER_HEADERS)).json()
            move = await http.patch(
                f"{API}/folders/{top.json()['id']}",
                json={"parent_id": second["parent_id"]},
                headers=MASTER_HEADERS,
            )
            assert move.status_code == 422
            unmoved = await http.get(f"{API}/folders/{top.json()['id']}", headers=MASTER_HEADERS)
            assert unmoved.json()["parent_id"] is None

    async def test_crossing_moves_never_make_a_cycle(
        self, client: httpx.AsyncClient, engine: AIOEngine
    ) -> None:
        for _ in range(5):
            a = await new_folder(engine, owner=MASTER)
            b = await new_folder(engine, owner=MASTER)
            answers = await asyncio.gather(
                client.patch(
                    f"{API}/folders/{a.id}", json={"parent_id": str(b.id)}, headers=MASTER_HEADERS
                ),
                client.patch(
                    f"{API}/folders/{b.id}", json={"parent_id": str(a.id)}, headers=MASTER_HEADERS
                ),
            )
            assert sorted(r.status_code for r in answers) == [200, 409]
            a_now = (await client.get(f"{API}/folders/{a.id}", headers=MASTER_HEADERS)).json()
            b_now = (await client.get(f"{API}/folders/{b.id}", headers=MASTER_HEADERS)).json()
            assert not (str(b.id) in a_now["ancestors"] and str(a.id) in b_now["ancestors"])
