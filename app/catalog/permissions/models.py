"""Storage models of the permissions domain: grants and pending invites."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from odmantic import Field

from app.core import collections
from app.core.errors import NotFound
from app.core.models import Document, index, stored_in, utcnow


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


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """What the permission code knows of a kind of resource besides each one's id and path."""

    resource_type: ResourceType
    # Raised for a resource of this kind that is missing or that the caller may not see.
    not_found: type[NotFound]
    # The stored field holding each resource's access path (list filters match on it).
    path_field: str


class Grant(Document):
    """A user's role on one folder, product or device (a folder grant covers its subtree)."""

    resource_type: ResourceType
    resource_id: str
    user_uid: str
    role: Role
    granted_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    model_config = stored_in(
        collections.GRANTS,
        index("resource_type", "resource_id", "user_uid", unique=True),
        # Every access decision and list filter starts from the caller's grants.
        index("user_uid", "resource_type"),
    )


class Invite(Document):
    """A share to an email address with no account yet; becomes a grant at first sign-in."""

    email: str
    resource_type: ResourceType
    resource_id: str
    role: Role
    invited_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)

    model_config = stored_in(
        collections.INVITES,
        index("resource_type", "resource_id", "email", unique=True),
        index("email"),
    )
