"""The API's own session tokens: short-lived access JWTs and rotating refresh JWTs.

Only the configured HMAC algorithm is ever accepted: `decode` is always given exactly that
one algorithm, and the header is checked against it first, so a token cannot choose `none`,
another HMAC size or a public-key algorithm. Access and refresh tokens carry a `typ` claim and
one is never accepted in place of the other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from jose import jwt
from jose.exceptions import JWTError

from app.auth.exceptions import InvalidCredentials
from app.core.config import Settings
from app.core.models import utcnow

TokenType = Literal["access", "refresh"]
ACCESS: TokenType = "access"
REFRESH: TokenType = "refresh"

_REQUIRED = ("exp", "iat", "sub", "jti", "aud", "iss")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The verified claims of one of our tokens."""

    typ: TokenType
    uid: str
    jti: str
    family_id: str
    issued_at: datetime
    expires_at: datetime
    # When the person signed in: the session's absolute lifetime counts from here.
    session_started_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token with its id and expiry."""

    token: str
    jti: str
    expires_at: datetime


def new_family_id() -> str:
    """A new session family id (one per sign-in; shared by every rotation of it)."""
    return uuid.uuid4().hex


def issue(
    settings: Settings,
    *,
    typ: TokenType,
    uid: str,
    family_id: str,
    session_started_at: datetime,
) -> IssuedToken:
    """Sign an access or refresh token for `uid` in session family `family_id`.

    No token outlives the session's absolute end (`SESSION_MAX_AGE_S` after sign-in).
    """
    now = utcnow().replace(microsecond=0)
    ttl = settings.access_token_ttl_s if typ == ACCESS else settings.refresh_token_ttl_s
    session_end = session_started_at + timedelta(seconds=settings.session_max_age_s)
    expires_at = min(now + timedelta(seconds=ttl), session_end.replace(microsecond=0))
    jti = uuid.uuid4().hex
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": uid,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": jti,
        "typ": typ,
        "fid": family_id,
        "sat": int(session_started_at.timestamp()),
    }
    token = jwt.encode(claims, settings.jwt_signing_key, algorithm=settings.jwt_algorithm)
    return IssuedToken(token=token, jti=jti, expires_at=expires_at)


# Access tokens verified recently: `(signing key, audience, issuer, token) -> claims`. A
# token's signature and claims never change, so a hit needs only the expiry checked again;
# the session behind it is checked on every request by the caller.
_VERIFIED_MAX = 10_000
_verified: dict[tuple[str, str, str, str], TokenClaims] = {}


def verified_access(settings: Settings, token: str) -> TokenClaims | None:
    """The claims of an access token this process verified before and that has not expired
    since, or None (verify it with `decode`)."""
    key = (settings.jwt_signing_key, settings.jwt_audience, settings.jwt_issuer, token)
    claims = _verified.get(key)
    if claims is None:
        return None
    if claims.expires_at <= datetime.now(UTC):
        _verified.pop(key, None)
        return None
    return claims


def remember_access(settings: Settings, token: str, claims: TokenClaims) -> None:
    """Keep a verified access token's claims for `verified_access`."""
    if claims.typ != ACCESS:
        return
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[(settings.jwt_signing_key, settings.jwt_audience, settings.jwt_issuer, token)] = (
        claims
    )


def is_ours(settings: Settings, token: str) -> bool:
    """True when the token claims to be issued by this API (it is verified separately)."""
    try:
        claims = jwt.get_unverified_claims(token)
    except (JWTError, ValueError, TypeError):
        return False
    return isinstance(claims, dict) and claims.get("iss") == settings.jwt_issuer


def decode(settings: Settings, token: str, *, typ: TokenType) -> TokenClaims:
    """Verify signature, algorithm, issuer, audience, expiry and type; 401 otherwise."""
    try:
        header = jwt.get_unverified_header(token)
        # Belt and braces: `decode` also refuses any algorithm but the one given.
        if header.get("alg") != settings.jwt_algorithm:
            raise InvalidCredentials("The token is not signed with the expected algorithm")
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_signing_key,
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={f"require_{name}": True for name in _REQUIRED},
        )
    except JWTError as exc:
        expired = "expired" in str(exc).lower()
        raise InvalidCredentials(
            "The token has expired" if expired else "The token is not valid"
        ) from None
    except (ValueError, TypeError, KeyError):
        raise InvalidCredentials("The token is not valid") from None
    if claims.get("typ") != typ:
        raise InvalidCredentials(f"The {typ} token is required here")
    sub, jti, fid, sat = claims.get("sub"), claims.get("jti"), claims.get("fid"), claims.get("sat")
    if not (
        isinstance(sub, str)
        and sub
        and isinstance(jti, str)
        and isinstance(fid, str)
        and isinstance(sat, int)
        and 0 < sat < 2**33
    ):
        raise InvalidCredentials("The token is not valid")
    return TokenClaims(
        typ=typ,
        uid=sub,
        jti=jti,
        family_id=fid,
        issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        session_started_at=datetime.fromtimestamp(sat, UTC),
    )
