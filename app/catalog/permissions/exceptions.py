"""Errors of the permissions domain."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, Unprocessable


class NotAllowed(Forbidden):
    """The caller can see the resource but its role does not allow this action."""

    type = "insufficient-role"
    title = "Your role does not allow this"


class LastOwner(Conflict):
    """The last owner of a resource cannot be removed or demoted."""

    type = "last-owner"
    title = "A resource must keep at least one owner"


class TooManyShares(Conflict):
    """The resource already carries the most grants and invites allowed."""

    type = "too-many-shares"
    title = "Too many shares on this resource"


class UserRequired(Forbidden):
    """Device keys act on their own device only; they cannot create resources."""

    type = "user-required"
    title = "Device keys cannot create resources"


class InvalidEmail(Unprocessable):
    """A share to an email needs exactly one valid address."""

    type = "invalid-email"
    title = "Not a valid email address"
