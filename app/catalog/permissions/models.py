"""Storage models of the permissions domain: grants and pending invites."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from odmantic import Field
from pymongo import ASCENDING, IndexModel

from app.core import collections
from app.core.models import Document, utcnow


class ResourceType(StrEnum):
    """What a grant can be given on."""

    FOLDER = "folder"
    PRODUCT = "product"
    DEVICE = "device"


class Role(StrEnum):
    """Access levels, each including the ones below: viewer < editor < owner."""

    VIEWER = "viewer"
    EDITOR = "editor"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        """Position in the order viewer < editor < owner."""
        return _RANKS[self]


_RANKS = {Role.VIEWER: 1, Role.EDITOR: 2, Role.OWNER: 3}


class Grant(Document):
    """A user's role on one folder, product or device (a folder grant covers its subtree)."""

    resource_type: ResourceType
    resource_id: str
    user_uid: str
    role: Role
    granted_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    model_config = {
        "collection": collections.GRANTS,
        "indexes": lambda: [
            IndexModel(
                [("resource_type", ASCENDING), ("resource_id", ASCENDING), ("user_uid", ASCENDING)],
                unique=True,
            ),
            # Every access decision and list filter starts from the caller's grants.
            IndexModel([("user_uid", ASCENDING), ("resource_type", ASCENDING)]),
        ],
    }


class Invite(Document):
    """A share to an email address with no account yet; becomes a grant at first sign-in."""

    resource_type: ResourceType
    resource_id: str
    email: str
    role: Role
    invited_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    model_config = {
        "collection": collections.INVITES,
        "indexes": lambda: [
            IndexModel(
                [("resource_type", ASCENDING), ("resource_id", ASCENDING), ("email", ASCENDING)],
                unique=True,
            ),
            IndexModel([("email", ASCENDING)]),
        ],
    }
