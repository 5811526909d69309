"""Errors of the users domain."""

from __future__ import annotations

from app.core.errors import NotFound, Unprocessable


class UserNotFound(NotFound):
    """No user with this uid."""

    type = "user-not-found"
    title = "User not found"


class InvalidCursor(Unprocessable):
    """The pagination cursor is not one this API handed out."""

    type = "invalid-cursor"
    title = "Invalid cursor"
