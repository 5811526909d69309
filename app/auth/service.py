"""Deciding who is calling, and the API session lifecycle (create, refresh, logout)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from odmantic import AIOEngine

from app.auth import device_keys, identities, sessions, tokens
from app.auth.exceptions import AccountDisabled, InvalidCredentials, RefreshTokenReused
from app.auth.firebase import FirebaseAccount, FirebaseIdentity
from app.auth.key_cache import DeviceKeyCache
from app.auth.models import User
from app.auth.principal import ADMIN_ROLE, Principal, PrincipalKind
from app.auth.principal_cache import PrincipalCache
from app.auth.schemas import MeRead, SessionTokens
from app.core import collections, db
from app.core.config import Settings
from app.core.models import utcnow

if TYPE_CHECKING:
    from app.core.services import Services

MASTER_PRINCIPAL = Principal(kind=PrincipalKind.MASTER, uid="master", roles=frozenset({ADMIN_ROLE}))


@dataclass(frozen=True, slots=True)
class Authentication:
    """The outcome of checking a request's credentials, before anything is written."""

    principal: Principal
    identity: FirebaseIdentity | None = None
    user: User | None = None


def ensure_enabled(user: User | None) -> None:
    """Refuse a user disabled in Sensorhub (403 on every request)."""
    if user is not None and user.disabled:
        raise AccountDisabled("This account has been disabled by an administrator")


async def authenticate_device(
    engine: AIOEngine, *, key: str, key_cache: DeviceKeyCache | None = None
) -> Authentication:
    """A device by its key: from the cache while revocations reach it, else from MongoDB."""
    if not device_keys.looks_like_device_key(key):
        raise InvalidCredentials("Not a device key")
    key_hash = device_keys.hash_key(key)
    device_id = None if key_cache is None else key_cache.lookup(key_hash)
    if device_id is None:
        generation = 0 if key_cache is None else key_cache.generation
        doc = await db.database(engine)[collections.DEVICES].find_one(
            {"key_hash": key_hash}, {"_id": 1}
        )
        if doc is None:
            raise InvalidCredentials("Unknown device key")
        device_id = str(doc["_id"])
        if key_cache is not None:
            key_cache.remember(key_hash, device_id, generation=generation)
    return Authentication(
        principal=Principal(kind=PrincipalKind.DEVICE, uid=device_id, device_id=device_id)
    )


def _is_master(settings: Settings, token: str) -> bool:
    if settings.master_token is None:
        return False
    expected = settings.master_token.get_secret_value().encode()
    return hmac.compare_digest(token.encode(), expected)


async def authenticate(services: Services, token: str) -> Authentication:
    """Resolve a bearer token: device key, master token, API access token, Firebase ID token,
    with this process's clients and caches (HTTP requests and sockets alike).

    An access token's user is read from the principal cache while it is live (no MongoDB
    read); it holds only enabled users of sessions not revoked, and forgets them on change.
    """
    engine, settings, principals = services.engine, services.settings, services.principals
    if device_keys.looks_like_device_key(token):
        return await authenticate_device(engine, key=token, key_cache=services.device_keys)
    verified = tokens.verified_access(settings, token)
    if verified is not None:
        session_user = await _session_user(engine, claims=verified, principals=principals)
        return Authentication(
            principal=identities.principal_for_user(settings, session_user), user=session_user
        )
    if _is_master(settings, token):
        return Authentication(principal=MASTER_PRINCIPAL)
    if tokens.is_ours(settings, token):
        claims = tokens.decode(settings, token, typ=tokens.ACCESS)
        session_user = await _session_user(engine, claims=claims, principals=principals)
        tokens.remember_access(settings, token, claims)
        return Authentication(
            principal=identities.principal_for_user(settings, session_user), user=session_user
        )
    identity = await services.firebase.verify(token)
    user = await identities.get_user(engine, uid=identity.uid)
    ensure_enabled(user)
    return Authentication(
        principal=identities.principal_for_identity(settings, identity, user),
        identity=identity,
        user=user,
    )


async def _session_user(
    engine: AIOEngine, *, claims: tokens.TokenClaims, principals: PrincipalCache | None
) -> User:
    """The enabled user of a session not revoked: from the cache, else from MongoDB."""
    if principals is not None:
        cached = principals.lookup(uid=claims.uid, family_id=claims.family_id)
        if cached is not None:
            return cached
    generation = 0 if principals is None else principals.generation
    user = await identities.get_user(engine, uid=claims.uid)
    if user is None:
        raise InvalidCredentials("The account no longer exists")
    ensure_enabled(user)
    if await sessions.is_family_revoked(engine, family_id=claims.family_id):
        raise InvalidCredentials("The session has ended; sign in again")
    if principals is not None:
        principals.remember(user, family_id=claims.family_id, generation=generation)
    return user


async def accept(services: Services, *, authentication: Authentication) -> None:
    """Record an accepted user request or socket (first sight, profile sync, last seen).

    A known user's "last seen" is written in the background, at most once per
    USER_SEEN_INTERVAL_S: a steady caller costs no write on the request path. A profile or
    claim change is announced to every process's principal cache.
    """
    if authentication.principal.kind is not PrincipalKind.USER:
        return
    user, identity = authentication.user, authentication.identity
    if user is not None and identity is None:
        services.seen.seen(services.engine, user)
        return
    await identities.record_sight(
        services, user=user, identity=identity, seen=services.seen, principals=services.principals
    )


def _me(principal: Principal, user: User | None) -> MeRead:
    return MeRead(
        uid=principal.uid,
        kind=principal.kind,
        email=principal.email,
        email_verified=principal.email_verified,
        display_name=user.display_name if user else None,
        roles=sorted(principal.roles),
        is_admin=principal.is_admin,
        created_at=user.created_at if user else None,
        last_seen_at=user.last_seen_at if user else None,
    )


async def me(engine: AIOEngine, *, principal: Principal) -> MeRead:
    """The caller's profile and roles (one read: the profile is the data asked for)."""
    user = await identities.get_user(engine, uid=principal.uid) if principal.is_user else None
    return _me(principal, user)


async def _issue(
    engine: AIOEngine,
    *,
    settings: Settings,
    user: User,
    family_id: str,
    session_started_at: datetime,
    principals: PrincipalCache | None = None,
) -> SessionTokens:
    access, refresh = (
        tokens.issue(
            settings,
            typ=typ,
            uid=user.uid,
            family_id=family_id,
            session_started_at=session_started_at,
        )
        for typ in (tokens.ACCESS, tokens.REFRESH)
    )
    await sessions.record(
        engine,
        jti=refresh.jti,
        family_id=family_id,
        uid=user.uid,
        expires_at=refresh.expires_at,
    )
    # A reuse seen while this token was being stored revokes the family after the fact.
    if await sessions.is_family_revoked(engine, family_id=family_id):
        await sessions.revoke_family(engine, family_id=family_id)
        await _session_ended(principals, family_id)
        raise RefreshTokenReused("The session was revoked while refreshing; sign in again")
    now = utcnow()
    return SessionTokens(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=int((access.expires_at - now).total_seconds()),
        refresh_expires_in=int((refresh.expires_at - now).total_seconds()),
        user=_me(identities.principal_for_user(settings, user), user),
    )


async def create_session(services: Services, *, id_token_in: str) -> SessionTokens:
    """Exchange a Firebase ID token (checked for revocation) for API session tokens."""
    identity = await services.firebase.verify(id_token_in, check_revoked=True)
    user = await identities.get_user(services.engine, uid=identity.uid)
    ensure_enabled(user)
    user = await identities.record_sight(
        services, user=user, identity=identity, principals=services.principals
    )
    return await _issue(
        services.engine,
        settings=services.settings,
        user=user,
        family_id=tokens.new_family_id(),
        session_started_at=utcnow(),
    )


async def _session_ended(principals: PrincipalCache | None, family_id: str) -> None:
    """Tell every process a revoked family's access tokens are void (after the write)."""
    if principals is not None:
        await principals.session_ended(family_id)


def session_ended_by(account: FirebaseAccount | None, *, started_at: datetime) -> str | None:
    """Why Firebase ends a session that started at `started_at`, or None if it may go on."""
    if account is None:
        return "The account no longer exists in Firebase; sign in again"
    if account.disabled:
        return "The account is disabled in Firebase"
    # Firebase records revocation in whole seconds: a session started in that very second
    # is not seen as revoked (as Firebase's own ID-token check does).
    valid_after = account.tokens_valid_after
    if valid_after is not None and int(valid_after.timestamp()) > int(started_at.timestamp()):
        return "The account was signed out everywhere; sign in again"
    return None


async def refresh(services: Services, *, refresh_token_in: str) -> SessionTokens:
    """Rotate a refresh token: it works once; a reused one revokes its whole family.

    The session ends (its whole family revoked) when it is older than SESSION_MAX_AGE_S, or
    when Firebase says the account is deleted, disabled or signed out everywhere since the
    session began; roles follow the account's current admin claim.
    """
    engine, settings, principals = services.engine, services.settings, services.principals
    claims = tokens.decode(settings, refresh_token_in, typ=tokens.REFRESH)
    max_age = timedelta(seconds=settings.session_max_age_s)
    reason: str | None = None
    if utcnow() >= claims.session_started_at + max_age:
        reason = "The session has reached its maximum age (SESSION_MAX_AGE_S); sign in again"
    user = await identities.get_user(engine, uid=claims.uid)
    if reason is None and user is None:
        reason = "The account no longer exists"
    if reason is None:
        ensure_enabled(user)  # disabled in Sensorhub: 403 (its sessions are already revoked)
    account = None if reason is not None else await services.firebase.account(claims.uid)
    if reason is None:
        reason = session_ended_by(account, started_at=claims.session_started_at)
    if reason is not None or user is None or account is None:
        await sessions.revoke_family(engine, family_id=claims.family_id)
        await _session_ended(principals, claims.family_id)
        raise InvalidCredentials(reason)
    stored = user
    user, verified_now = await identities.sync_account(
        engine, settings=settings, user=user, account=account
    )
    if user is not stored and principals is not None:
        await principals.user_changed(user.uid)  # the claim changed: roles follow at once
    if verified_now:
        await services.on_sign_in(
            engine, services.celery, user=user, first_seen=False, verified_now=True
        )
    try:
        await sessions.spend(engine, jti=claims.jti, family_id=claims.family_id, uid=claims.uid)
    except RefreshTokenReused:
        await _session_ended(principals, claims.family_id)
        raise
    return await _issue(
        engine,
        settings=settings,
        user=user,
        family_id=claims.family_id,
        session_started_at=claims.session_started_at,
        principals=principals,
    )


async def logout(
    engine: AIOEngine,
    *,
    settings: Settings,
    refresh_token_in: str,
    principals: PrincipalCache | None = None,
) -> None:
    """End a session: every token of the refresh token's family stops working, everywhere."""
    claims = tokens.decode(settings, refresh_token_in, typ=tokens.REFRESH)
    await sessions.revoke_family(engine, family_id=claims.family_id)
    await _session_ended(principals, claims.family_id)
