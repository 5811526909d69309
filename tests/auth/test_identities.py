"""First sight (the user record and the welcome email), profile sync, the last-seen throttle."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.auth import identities
from app.auth.firebase import FirebaseIdentity
from app.auth.models import User
from app.core.config import Settings
from app.core.db import MongoDatabase
from app.core.services import services_of
from app.users import onboarding
from tests.fixtures.app import client_for, running_app
from tests.fixtures.identities import MakeUser, unique_email

ME = "/api/v1/auth/me"


def identity(**overrides: Any) -> FirebaseIdentity:
    now = int(time.time())
    values: dict[str, Any] = {
        "uid": f"svc-{time.monotonic_ns()}",
        "email": unique_email(),
        "email_verified": False,
        "display_name": "Lin",
        "admin_claim": False,
        "issued_at": now,
        "expires_at": now + 3600,
    }
    values.update(overrides)
    return FirebaseIdentity(**values)


async def first_sight(app: FastAPI, who: FirebaseIdentity) -> tuple[User, bool]:
    """What a first request with `who`'s ID token does; True when this call created the user."""
    services = services_of(app)
    seen: list[bool] = []

    async def hook(engine: Any, celery: Any, **event: Any) -> None:
        seen.append(event["first_seen"])
        await onboarding.welcome(engine, celery, **event)

    user = await identities.record_sight(
        dataclasses.replace(services, on_sign_in=hook),
        user=await identities.get_user(services.engine, uid=who.uid),
        identity=who,
    )
    return user, any(seen)


class TestOnFirstSignIn:
    async def test_creates_once_and_queues_one_welcome_email(
        self, app: FastAPI, settings: Settings, mongo_db: MongoDatabase
    ) -> None:
        who = identity(email_verified=True)
        results = await asyncio.gather(*(first_sight(app, who) for _ in range(3)))
        assert sorted(created for _, created in results) == [False, False, True]
        assert await mongo_db.users.count_documents({"uid": who.uid}) == 1
        outbox = await mongo_db.email_outbox.find({"to": who.email}).to_list(None)
        assert [(m["template"], m["dedupe_key"]) for m in outbox] == [
            ("welcome", f"welcome:{who.uid}")
        ]
        stored = await mongo_db.users.find_one({"uid": who.uid})
        # Dates written by the upsert's insert stay dates (not strings) on both servers.
        assert isinstance(stored["created_at"], datetime)
        assert isinstance(stored["last_seen_at"], datetime)

    async def test_no_email_no_welcome(
        self, app: FastAPI, settings: Settings, mongo_db: MongoDatabase
    ) -> None:
        who = identity(email=None)
        user, created = await first_sight(app, who)
        assert created
        assert user.email is None
        assert (
            await mongo_db.email_outbox.count_documents({"dedupe_key": f"welcome:{who.uid}"}) == 0
        )

    async def test_first_request_through_the_api_welcomes(
        self, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        user = await make_user(email_verified=True)
        for _ in range(2):
            assert (await client.get(ME, headers=user.headers)).status_code == 200
        assert await mongo_db.email_outbox.count_documents({"to": user.email}) == 1

    async def test_unverified_address_gets_no_welcome_until_verified(
        self, app: FastAPI, settings: Settings, mongo_db: MongoDatabase
    ) -> None:
        who = identity(email_verified=False)
        await first_sight(app, who)
        assert await mongo_db.email_outbox.count_documents({"to": who.email}) == 0
        verified = identity(
            uid=who.uid, email=who.email, email_verified=True, issued_at=who.issued_at + 5
        )
        for _ in range(2):
            await first_sight(app, verified)
        outbox = await mongo_db.email_outbox.find({"to": who.email}).to_list(None)
        assert [m["template"] for m in outbox] == ["welcome"]


class TestSyncIdentity:
    async def test_newer_token_updates_older_does_not(
        self, app: FastAPI, settings: Settings, mongo_db: MongoDatabase
    ) -> None:
        engine = services_of(app).engine
        first = identity()
        user, _ = await first_sight(app, first)
        newer = identity(
            uid=first.uid, email=first.email, email_verified=True, issued_at=first.issued_at + 5
        )
        user, verified_now = await identities.sync_identity(
            engine, settings=settings, user=user, identity=newer
        )
        assert verified_now
        assert user.email_verified is True
        older = identity(
            uid=first.uid, email=first.email, display_name="Old", issued_at=first.issued_at - 5
        )
        await identities.sync_identity(engine, settings=settings, user=user, identity=older)
        stored = await mongo_db.users.find_one({"uid": first.uid})
        assert (stored["email_verified"], stored["display_name"]) == (True, "Lin")
        assert isinstance(stored["updated_at"], datetime)


class TestLastSeen:
    async def test_throttled(
        self, client: httpx.AsyncClient, make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        user = await make_user()
        await client.get(ME, headers=user.headers)
        first = (await mongo_db.users.find_one({"uid": user.uid}))["last_seen_at"]
        await asyncio.sleep(0.05)
        await client.get(ME, headers=user.headers)
        assert (await mongo_db.users.find_one({"uid": user.uid}))["last_seen_at"] == first

    async def test_written_as_a_date_when_due(
        self, make_settings: Callable[..., Settings], make_user: MakeUser, mongo_db: MongoDatabase
    ) -> None:
        user = await make_user()
        async with running_app(make_settings(user_seen_interval_s=0)) as app:
            async with client_for(app) as http:
                await http.get(ME, headers=user.headers)
                first = (await mongo_db.users.find_one({"uid": user.uid}))["last_seen_at"]
                await asyncio.sleep(0.05)
                await http.get(ME, headers=user.headers)
        second = (await mongo_db.users.find_one({"uid": user.uid}))["last_seen_at"]
        assert isinstance(second, datetime)
        assert second > first
