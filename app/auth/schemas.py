"""API schemas of the auth domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from app.auth.principal import PrincipalKind
from app.ratelimit.schemas import QuotaRead

# Real tokens are 1-2 KB; the bound keeps a caller from making us parse megabytes.
TokenStr = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,8192}$")]


class SessionCreate(BaseModel):
    """A Firebase ID token, exchanged for the API's own session tokens."""

    model_config = ConfigDict(extra="forbid")

    id_token: TokenStr


class RefreshRequest(BaseModel):
    """A refresh token: rotated by `/auth/refresh`, its family revoked by `/auth/logout`."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: TokenStr


class MeRead(BaseModel):
    """Who the caller is: profile and roles (and, with rate limiting, the quota that applies)."""

    uid: str
    kind: PrincipalKind
    email: str | None = None
    email_verified: bool = False
    display_name: str | None = None
    roles: list[str]
    is_admin: bool
    created_at: datetime | None = None
    last_seen_at: datetime | None = None
    quota: QuotaRead | None = None


class SessionTokens(BaseModel):
    """API session tokens; send `access_token` as `Authorization: Bearer ...`."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_expires_in: int
    user: MeRead
