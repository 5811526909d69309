"""Errors of the auth domain; every 401 carries `WWW-Authenticate: Bearer`."""

from __future__ import annotations

from app.core.errors import Forbidden, NotFound, ServiceUnavailable, Unauthorized


class InvalidCredentials(Unauthorized):
    """The token or key is malformed, forged, expired, revoked or for someone else."""

    type = "invalid-credentials"
    title = "Invalid credentials"


class CredentialsRequired(Unauthorized):
    """The route needs a caller and the request names none."""

    type = "credentials-required"
    title = "Authentication required"


class RefreshTokenReused(Unauthorized):
    """A spent refresh token came back: its whole session family is now revoked."""

    type = "refresh-token-reused"
    title = "Refresh token reused"


class AccountDisabled(Forbidden):
    """The user is disabled in Sensorhub."""

    type = "account-disabled"
    title = "Account disabled"


class AdminRequired(Forbidden):
    """The route is for admins (or the master token)."""

    type = "admin-required"
    title = "Admin rights required"


class UserRequired(Forbidden):
    """The route is for signed-in people, not devices."""

    type = "user-required"
    title = "A signed-in user is required"


class IdentityProviderUnavailable(ServiceUnavailable):
    """Firebase could not be reached (keys, user lookup); the client may retry."""

    type = "identity-provider-unavailable"
    title = "Identity provider unavailable"


class KeyRevocationPending(ServiceUnavailable):
    """A device key was changed, but not every API process could be told to forget it."""

    type = "key-revocation-pending"
    title = "Key revocation not yet everywhere"


class UserNotFound(NotFound):
    """No user with this uid (or email) is known to Sensorhub."""

    type = "user-not-found"
    title = "User not found"
