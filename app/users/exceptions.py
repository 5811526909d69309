"""Errors of the users domain (a missing user is `app.auth.exceptions.UserNotFound`)."""

from __future__ import annotations

from app.core.errors import Conflict


class EmailNotVerified(Conflict):
    """Admin rights by email need an address its owner has verified."""

    type = "email-not-verified"
    title = "Email address not verified"
