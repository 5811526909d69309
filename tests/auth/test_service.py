"""Firebase verification cache and the sessions collection's storage contract."""

from __future__ import annotations

from fastapi import FastAPI

from app.auth.firebase import FirebaseAuth
from app.core.db import MongoDatabase
from app.core.services import services_of
from tests.fixtures.identities import MakeUser, token_claims


class TestFirebaseCache:
    async def test_verified_token_is_reused_until_it_expires(
        self, app: FastAPI, make_user: MakeUser
    ) -> None:
        firebase: FirebaseAuth = services_of(app).firebase
        user = await make_user()
        first = await firebase.verify(user.id_token)
        second = await firebase.verify(user.id_token)
        assert second is first  # served from the cache, no second verification
        assert first.expires_at == token_claims(user.id_token)["exp"]

    async def test_session_creation_checks_revocation_again(
        self, app: FastAPI, make_user: MakeUser
    ) -> None:
        firebase: FirebaseAuth = services_of(app).firebase
        user = await make_user()
        cached = await firebase.verify(user.id_token)
        checked = await firebase.verify(user.id_token, check_revoked=True)
        assert checked is not cached
        assert checked == cached


class TestSessionsCollection:
    async def test_ttl_index_on_expiry(self, app: FastAPI, mongo_db: MongoDatabase) -> None:
        indexes = await mongo_db.sessions.index_information()
        ttl = [spec for spec in indexes.values() if spec["key"] == [("expires_at", 1)]]
        assert len(ttl) == 1
        assert ttl[0]["expireAfterSeconds"] == 0
