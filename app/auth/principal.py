"""The `Principal`: the one description of a caller that every other domain relies on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PrincipalKind(StrEnum):
    """How the caller authenticated."""

    USER = "user"
    MASTER = "master"
    DEVICE = "device"


ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `uid` is the Firebase uid for users, `"master"` for the master token and the device id
    for devices; `device_id` is set only for devices.
    """

    kind: PrincipalKind
    uid: str
    email: str | None = None
    email_verified: bool = False
    roles: frozenset[str] = field(default_factory=frozenset)
    device_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """Admins and the master token see and manage everything."""
        return self.kind is PrincipalKind.MASTER or ADMIN_ROLE in self.roles

    @property
    def is_user(self) -> bool:
        """A person signed in through Firebase (admin or not)."""
        return self.kind is PrincipalKind.USER

    @property
    def is_device(self) -> bool:
        """A device authenticated with its own key."""
        return self.kind is PrincipalKind.DEVICE
