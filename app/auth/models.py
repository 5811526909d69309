"""Storage models of the auth domain."""

from __future__ import annotations

from datetime import datetime

from odmantic import Field
from pymongo import ASCENDING, IndexModel

from app.core.models import Document, utcnow


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

    model_config = {
        "collection": "sessions",
        "indexes": lambda: [
            IndexModel([("jti", ASCENDING)], unique=True),
            IndexModel([("family_id", ASCENDING)]),
            IndexModel([("uid", ASCENDING)]),
            IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
        ],
    }
