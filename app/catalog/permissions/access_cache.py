"""Grants and resource access paths kept in memory, trusted only while the change feed is live.

Deciding "may this user view that device" needs the user's grants and the device's access
path (the folders whose grants reach it): two MongoDB reads. This cache keeps both for
`AUTH_CACHE_S` seconds and still lets a lost right stop at once:

* removing or changing a grant announces the user, moving or deleting a resource announces
  the resource (a cached path carries a tag for each of its folders, so moving or deleting
  a folder reaches every device below it), on the Redis channel every API process follows;
* the cache is only ever trusted to ALLOW: a refusal computed from it is checked again
  against MongoDB, so a grant just added (which nobody needs to announce) works at once;
* while the feed is not subscribed nothing is served from it (`app.core.feed_cache`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.catalog.permissions.models import ResourceType, Role
from app.core.feed_cache import FeedCache

CHANNEL = "sensorhub:access:changed"
# A user with more grants than this is not cached (their grants are read per request).
MAX_GRANTS = 1000


def user_tag(uid: str) -> str:
    """The tag of a user's cached grants."""
    return f"user:{uid}"


def resource_tag(resource_id: str) -> str:
    """The tag of a resource's cached access path, and of the paths that pass through it."""
    return f"res:{resource_id}"


@dataclass(frozen=True, slots=True)
class UserGrants:
    """Every grant a user holds: `(resource type, resource id) -> role`."""

    roles: dict[tuple[str, str], Role]

    def best(
        self, *, resource_type: ResourceType, resource_id: str, folders: Iterable[str]
    ) -> Role | None:
        """The strongest role from a grant on the resource or on a folder of its path."""
        best = self.roles.get((resource_type.value, resource_id))
        for folder_id in folders:
            role = self.roles.get((ResourceType.FOLDER.value, folder_id))
            if role is not None and (best is None or role.rank > best.rank):
                best = role
        return best


@dataclass(frozen=True, slots=True)
class AccessPath:
    """The folders whose grants reach a resource."""

    folders: tuple[str, ...]


class AccessCache(FeedCache[tuple[str, str], UserGrants | AccessPath]):
    """`("grants", uid) -> UserGrants` and `(resource type, id) -> AccessPath`."""

    channel = CHANNEL
    lost_warning = f"{CHANNEL} feed lost; reading every lookup from MongoDB"
    what = "a removed grant or a moved or deleted resource"

    def grants(self, uid: str) -> UserGrants | None:
        """A user's grants read recently, or None (read MongoDB)."""
        value = self.get(("grants", uid))
        return value if isinstance(value, UserGrants) else None

    def remember_grants(self, uid: str, grants: UserGrants, *, generation: int) -> None:
        """Keep a user's grants read at `generation`."""
        if len(grants.roles) <= MAX_GRANTS:
            self.put(("grants", uid), grants, tags=(user_tag(uid),), generation=generation)

    def path(self, resource_type: ResourceType, resource_id: str) -> AccessPath | None:
        """A resource's access path read recently, or None (read MongoDB)."""
        value = self.get((resource_type.value, resource_id))
        return value if isinstance(value, AccessPath) else None

    def remember_path(
        self,
        resource_type: ResourceType,
        resource_id: str,
        folders: Iterable[str],
        *,
        generation: int,
    ) -> None:
        """Keep a resource's access path read at `generation` (tagged by each folder too)."""
        path = AccessPath(tuple(folders))
        tags = (resource_tag(resource_id), *map(resource_tag, path.folders))
        self.put((resource_type.value, resource_id), path, tags=tags, generation=generation)

    async def grants_changed(self, uids: Iterable[str]) -> None:
        """Grants of these users changed or went: every process reads them again."""
        await self.announce(map(user_tag, uids))

    async def resources_changed(self, resource_ids: Iterable[str]) -> None:
        """These resources moved or were deleted: every process reads their paths again."""
        await self.announce(map(resource_tag, resource_ids))
