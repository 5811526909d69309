"""Storage model of the folders domain: a tree kept with materialised `ancestors`."""

from __future__ import annotations

from datetime import datetime

from odmantic import Field
from pymongo import ASCENDING, IndexModel

from app.core.models import Document, utcnow


class Folder(Document):
    """A folder (site, region, unit ...); `ancestors` lists the hex ids from the root down.

    `scope` is the parent's id, or `user:<creator uid>` at the top level, so that names are
    unique among siblings without clashing between users' top-level folders.
    """

    name: str
    name_key: str
    parent_id: str | None = None
    ancestors: list[str] = Field(default_factory=list)
    scope: str
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {
        "collection": "folders",
        "indexes": lambda: [
            IndexModel([("scope", ASCENDING), ("name_key", ASCENDING)], unique=True),
            IndexModel([("parent_id", ASCENDING)]),
            # Multikey: "everything below folder X" and the readable filter's inherited branch.
            IndexModel([("ancestors", ASCENDING)]),
        ],
    }

    @property
    def path(self) -> list[str]:
        """The ids from the root down to and including this folder."""
        return [*self.ancestors, str(self.id)]
