"""Storage models of the auth domain."""

from __future__ import annotations

from datetime import datetime

from odmantic import Field

from app.core import collections
from app.core.models import Document, index, stored_in, utcnow


class Session(Document):
    """One refresh token of a session family; spent on use, revoked with its family.

    A sign-in starts a family; each refresh spends the presented token and inserts the next
    one. The TTL index removes a token's document once the token has expired.
    """

    jti: str
    family_id: str
    uid: str
    spent: bool = False
    revoked: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime

    model_config = stored_in(
        collections.SESSIONS,
        index("jti", unique=True),
        index("family_id"),
        index("uid"),
        index("expires_at", expireAfterSeconds=0),
    )


class User(Document):
    """A person known to Sensorhub, keyed by Firebase uid.

    `admin` mirrors the Firebase custom claim; `claims_iat` is the issue time (epoch seconds)
    of the newest token or admin change reflected here, so an older ID token never overrides
    a newer decision. `roles` are the effective roles when the document was last written.
    """

    uid: str
    email: str | None = None
    email_verified: bool = False
    display_name: str | None = None
    admin: bool = False
    roles: list[str] = Field(default_factory=list)
    disabled: bool = False
    claims_iat: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)

    model_config = stored_in(collections.USERS, index("uid", unique=True), index("email"))
