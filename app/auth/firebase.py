"""Firebase Auth through firebase-admin: ID-token verification and the user admin calls.

The SDK is blocking, so every call runs in a worker thread with the SDK's HTTP timeout set in
seconds (its default is 120 s). Verified ID tokens are cached until their own expiry so that a
busy client does not pay a verification per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import firebase_admin
from cachetools import TLRUCache, TTLCache
from firebase_admin import auth, exceptions
from google.auth.exceptions import GoogleAuthError
from jose import jwt
from jose.exceptions import JWTError

from app.auth.exceptions import IdentityProviderUnavailable, InvalidCredentials
from app.core.config import Settings

logger = logging.getLogger(__name__)

EMULATOR_ENV_VAR = "FIREBASE_AUTH_EMULATOR_HOST"
ADMIN_CLAIM = "admin"
CLOCK_SKEW_S = 60

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FirebaseIdentity:
    """The claims of a verified Firebase ID token that Sensorhub uses."""

    uid: str
    email: str | None
    email_verified: bool
    display_name: str | None
    admin_claim: bool
    issued_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class FirebaseAccount:
    """What Firebase says about an account now (refreshes check it)."""

    uid: str
    email: str | None
    email_verified: bool
    disabled: bool
    admin_claim: bool
    # Tokens issued before this moment were revoked ("sign out everywhere"); None if never.
    tokens_valid_after: datetime | None


def account_from_record(record: auth.UserRecord) -> FirebaseAccount:
    """The fields of a Firebase user record that decide whether a session may go on."""
    valid_after_ms = record.tokens_valid_after_timestamp
    email = record.email
    return FirebaseAccount(
        uid=str(record.uid),
        email=email.lower() if isinstance(email, str) else None,
        email_verified=bool(record.email_verified),
        disabled=bool(record.disabled),
        admin_claim=(record.custom_claims or {}).get(ADMIN_CLAIM) is True,
        tokens_valid_after=(
            datetime.fromtimestamp(valid_after_ms / 1000, UTC) if valid_after_ms else None
        ),
    )


def identity_from_claims(claims: dict[str, Any]) -> FirebaseIdentity:
    """Pick the fields Sensorhub uses out of verified token claims."""
    email = claims.get("email")
    return FirebaseIdentity(
        uid=str(claims["uid"]),
        email=email.lower() if isinstance(email, str) else None,
        email_verified=claims.get("email_verified") is True,
        display_name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        # Only a real boolean counts: a claim "admin": "false" must not make an admin.
        admin_claim=claims.get(ADMIN_CLAIM) is True,
        issued_at=int(claims.get("iat", 0)),
        expires_at=int(claims.get("exp", 0)),
    )


def _token_key(token: str) -> str:
    # The cache holds digests, not bearer tokens.
    return hashlib.sha256(token.encode()).hexdigest()


def _until_expiry(_key: str, identity: FirebaseIdentity, _now: float) -> float:
    return float(identity.expires_at)


def _refuse_expired(id_token: str) -> None:
    """Reject a token whose own `exp` has passed before any SDK or network call.

    Reading the claims unverified is safe here: this can only refuse a token, never accept one.
    """
    try:
        exp = jwt.get_unverified_claims(id_token).get("exp")
    except (JWTError, ValueError, TypeError, AttributeError):
        return  # malformed: the SDK says why
    if isinstance(exp, int | float) and exp <= time.time():
        raise InvalidCredentials("The ID token has expired")


def _app_for(settings: Settings) -> firebase_admin.App:
    """One named firebase-admin app per project id (several test apps share a process)."""
    name = f"sensorhub-{settings.firebase_project_id}"
    try:
        return firebase_admin.get_app(name)
    except ValueError:
        return firebase_admin.initialize_app(
            options={
                "projectId": settings.firebase_project_id,
                "httpTimeout": settings.firebase_http_timeout_s,
            },
            name=name,
        )


class FirebaseAuth:
    """Verification and user management against one Firebase project (or its emulator)."""

    def __init__(self, settings: Settings) -> None:
        if settings.firebase_auth_emulator_host:
            # firebase-admin has no option for the emulator: it reads this environment variable
            # when its auth client is first made. Settings refuse the emulator outside
            # development and test, where it would accept unsigned tokens.
            os.environ[EMULATOR_ENV_VAR] = settings.firebase_auth_emulator_host
        self.app = _app_for(settings)
        self._accounts: TTLCache[str, FirebaseAccount | None] | None = (
            TTLCache(maxsize=10_000, ttl=settings.firebase_account_cache_s)
            if settings.firebase_account_cache_s > 0
            else None
        )
        self._cache: TLRUCache[str, FirebaseIdentity] | None = (
            TLRUCache(
                maxsize=settings.firebase_token_cache_size, ttu=_until_expiry, timer=time.time
            )
            if settings.firebase_token_cache_size
            else None
        )

    async def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking SDK call off the event loop; outages become 503."""
        try:
            return await asyncio.to_thread(func, *args, app=self.app, **kwargs)
        except (
            auth.InvalidIdTokenError,
            auth.UserDisabledError,
            auth.UserNotFoundError,
            ValueError,
        ):
            raise
        except (exceptions.FirebaseError, GoogleAuthError) as exc:
            logger.warning("firebase call failed", extra={"error": type(exc).__name__})
            raise IdentityProviderUnavailable(
                "Firebase Auth did not answer; try again shortly"
            ) from None

    async def verify(self, id_token: str, *, check_revoked: bool = False) -> FirebaseIdentity:
        """Verify an ID token (from cache when seen before, unless revocation is checked)."""
        key = _token_key(id_token)
        if not check_revoked and self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None and cached.expires_at > time.time():
                return cached
        _refuse_expired(id_token)
        try:
            claims = await self._call(auth.verify_id_token, id_token, check_revoked=check_revoked)
        except auth.UserDisabledError:
            raise InvalidCredentials("The account is disabled in Firebase") from None
        except auth.RevokedIdTokenError:
            raise InvalidCredentials("The ID token has been revoked; sign in again") from None
        except auth.ExpiredIdTokenError:
            raise InvalidCredentials("The ID token has expired") from None
        except auth.UserNotFoundError:
            raise InvalidCredentials("The account no longer exists") from None
        except (auth.InvalidIdTokenError, ValueError):
            raise InvalidCredentials("Not a valid Firebase ID token for this project") from None
        identity = identity_from_claims(claims)
        # The SDK checks these against Google's keys, but skips them in emulator mode; checking
        # here too keeps expired tokens out of the cache and the emulator honest.
        now = time.time()
        if identity.expires_at <= now:
            raise InvalidCredentials("The ID token has expired")
        if identity.issued_at > now + CLOCK_SKEW_S:
            raise InvalidCredentials("The ID token is not valid yet")
        if self._cache is not None:
            self._cache[key] = identity
        return identity

    async def get_user(self, uid: str) -> auth.UserRecord | None:
        """The Firebase account, or None when it does not exist."""
        try:
            return await self._call(auth.get_user, uid)
        except auth.UserNotFoundError:
            return None

    async def account(self, uid: str) -> FirebaseAccount | None:
        """The account's current state (None when deleted), at most FIREBASE_ACCOUNT_CACHE_S old."""
        if self._accounts is not None and uid in self._accounts:
            return self._accounts[uid]
        record = await self.get_user(uid)
        found = None if record is None else account_from_record(record)
        if self._accounts is not None:
            self._accounts[uid] = found
        return found

    def forget_account(self, uid: str) -> None:
        """Drop a cached account (after this process changed it)."""
        if self._accounts is not None:
            self._accounts.pop(uid, None)

    async def get_user_by_email(self, email: str) -> auth.UserRecord | None:
        """The Firebase account with this email, or None."""
        try:
            return await self._call(auth.get_user_by_email, email)
        except (auth.UserNotFoundError, ValueError):  # ValueError: not an email address
            return None

    async def set_admin_claim(self, uid: str, *, admin: bool) -> bool:
        """Set or clear the `admin` custom claim, keeping other claims; False if no account."""
        self.forget_account(uid)
        record = await self.get_user(uid)
        if record is None:
            return False
        claims = dict(record.custom_claims or {})
        if admin:
            claims[ADMIN_CLAIM] = True
        else:
            claims.pop(ADMIN_CLAIM, None)
        await self._call(auth.set_custom_user_claims, uid, claims or None)
        return True

    async def set_disabled(self, uid: str, *, disabled: bool) -> bool:
        """Disable (and sign out everywhere) or enable the account; False if no account."""
        self.forget_account(uid)
        try:
            await self._call(auth.update_user, uid, disabled=disabled)
            if disabled:
                await self._call(auth.revoke_refresh_tokens, uid)
        except auth.UserNotFoundError:
            return False
        return True
