"""Session principals kept in memory, trusted only while the change feed is live.

An API access token names a user and a session family; turning it into a principal costs
two MongoDB reads (the user, the family's revocation). This cache keeps the answer for
`AUTH_CACHE_S` seconds per (user, family) and still lets a change stop a right at once:
logout and refresh-token reuse announce the family, disabling a user or changing their
roles announces the user, on the Redis channel every API process follows (see
`app.core.feed_cache` for why a missed announcement cannot keep a right alive).
"""

from __future__ import annotations

from app.auth.models import User
from app.core.feed_cache import FeedCache

CHANNEL = "sensorhub:principals:changed"


def user_tag(uid: str) -> str:
    """The tag of everything cached about a user."""
    return f"user:{uid}"


def family_tag(family_id: str) -> str:
    """The tag of a session family's cached principal."""
    return f"family:{family_id}"


class PrincipalCache(FeedCache[tuple[str, str], User]):
    """`(uid, session family) -> User` of a session not revoked, for enabled users only."""

    channel = CHANNEL
    lost_warning = f"{CHANNEL} feed lost; reading every lookup from MongoDB"
    what = "a signed-out session or a removed role"

    def lookup(self, *, uid: str, family_id: str) -> User | None:
        """The user of a live session seen recently, or None (read MongoDB)."""
        return self.get((uid, family_id))

    def remember(self, user: User, *, family_id: str, generation: int) -> None:
        """Keep the user of an accepted session read at `generation`."""
        self.put(
            (user.uid, family_id),
            user,
            tags=(user_tag(user.uid), family_tag(family_id)),
            generation=generation,
        )

    async def user_changed(self, uid: str) -> None:
        """A user was disabled, or their roles changed: every process reads them again."""
        await self.announce([user_tag(uid)])

    async def session_ended(self, family_id: str) -> None:
        """A session family was revoked: no process accepts its access tokens any more."""
        await self.announce([family_tag(family_id)])
