"""Sharing over HTTP: by uid or email, pending invites that become grants, the last owner."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from app.core.db import MongoDatabase
from tests.fixtures.catalog_http import API, api_folder, signed_in
from tests.fixtures.identities import MakeUser, unique_email


class TestInvites:
    async def test_email_without_account_gets_invite_that_becomes_a_grant(
        self, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        alice = await signed_in(make_user, client)
        folder = await api_folder(client, alice)
        email = unique_email()
        url = f"{API}/folders/{folder['id']}/permissions/{email.upper()}"
        resp = await client.put(url, json={"role": "editor"}, headers=alice.headers)
        assert resp.status_code == 200, resp.text
        assert resp.json() | {"created_at": None} == {
            "user_id": None,
            "email": email,
            "role": "editor",
            "status": "pending",
            "created_at": None,
        }
        queued = await mongo_db.email_outbox.find_one({"to": email})
        assert queued is not None
        assert queued["template"] == "share_invite"
        assert queued["context"]["resource_name"] == folder["name"]

        # Re-sharing changes the role without a second email.
        await client.put(url, json={"role": "viewer"}, headers=alice.headers)
        assert await mongo_db.email_outbox.count_documents({"to": email}) == 1

        invitee = await make_user(email=email, email_verified=True)
        got = await client.get(f"{API}/folders/{folder['id']}", headers=invitee.headers)
        assert got.status_code == 200, got.text
        shares = await client.get(
            f"{API}/folders/{folder['id']}/permissions", headers=alice.headers
        )
        entries = {(s["user_id"], s["status"], s["role"]) for s in shares.json()["items"]}
        assert entries == {(alice.uid, "active", "owner"), (invitee.uid, "active", "viewer")}

    async def test_unverified_account_does_not_take_an_invite(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        folder = await api_folder(client, alice)
        email = unique_email()
        url = f"{API}/folders/{folder['id']}/permissions/{email}"
        assert (await client.put(url, json={"role": "viewer"}, headers=alice.headers)).json()[
            "status"
        ] == "pending"
        squatter = await make_user(email=email, email_verified=False)
        got = await client.get(f"{API}/folders/{folder['id']}", headers=squatter.headers)
        assert got.status_code == 404

    async def test_existing_verified_user_by_email_gets_a_grant(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        bob = await signed_in(make_user, client, email_verified=True)
        folder = await api_folder(client, alice)
        url = f"{API}/folders/{folder['id']}/permissions/{bob.email}"
        resp = await client.put(url, json={"role": "viewer"}, headers=alice.headers)
        assert (resp.json()["status"], resp.json()["user_id"]) == ("active", bob.uid)
        assert (
            await client.get(f"{API}/folders/{folder['id']}", headers=bob.headers)
        ).status_code == 200


class TestOwners:
    async def test_last_owner_cannot_leave_or_be_demoted(
        self, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        bob = await signed_in(make_user, client)
        folder = await api_folder(client, alice)
        base = f"{API}/folders/{folder['id']}/permissions"
        assert (
            await client.delete(f"{base}/{alice.uid}", headers=alice.headers)
        ).status_code == 409
        demote = await client.put(
            f"{base}/{alice.uid}", json={"role": "viewer"}, headers=alice.headers
        )
        assert demote.status_code == 409
        assert demote.json()["type"] == "/problems/last-owner"
        await client.put(f"{base}/{bob.uid}", json={"role": "owner"}, headers=alice.headers)
        assert (
            await client.delete(f"{base}/{alice.uid}", headers=alice.headers)
        ).status_code == 204
        assert (await client.get(base, headers=alice.headers)).status_code == 404
        assert (await client.get(base, headers=bob.headers)).status_code == 200

    async def test_bad_share_requests(
        self, app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser
    ) -> None:
        alice = await signed_in(make_user, client)
        folder = await api_folder(client, alice)
        base = f"{API}/folders/{folder['id']}/permissions"
        unknown = await client.put(
            f"{base}/no-such-uid", json={"role": "viewer"}, headers=alice.headers
        )
        assert unknown.status_code == 404
        bad_role = await client.put(
            f"{base}/{alice.uid}", json={"role": "god"}, headers=alice.headers
        )
        assert bad_role.status_code == 422
        assert (
            await client.delete(f"{base}/nobody@example.com", headers=alice.headers)
        ).status_code == 404
        shares = (await client.get(base, headers=alice.headers)).json()["items"]
        assert [(s["user_id"], s["role"]) for s in shares] == [(alice.uid, "owner")]
