"""Storage models of the users domain."""

from __future__ import annotations

from datetime import datetime

from odmantic import Field
from pymongo import ASCENDING, IndexModel

from app.core.models import Document, utcnow


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

    model_config = {
        "collection": "users",
        "indexes": lambda: [
            IndexModel([("uid", ASCENDING)], unique=True),
            IndexModel([("email", ASCENDING)]),
        ],
    }
