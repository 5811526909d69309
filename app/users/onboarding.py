"""What happens when a person is first seen, or first seen with a verified email.

`welcome` is the `SignInHook` the app is built with (`app.auth.identities` calls it): the
welcome email on first sight, and shares sent to the address before the account existed
becoming grants once the address is verified.
"""

from __future__ import annotations

from celery import Celery
from odmantic import AIOEngine

from app.auth.models import User
from app.catalog.permissions import sharing
from app.emails import outbox

WELCOME_TEMPLATE = "welcome"


async def welcome(
    engine: AIOEngine, celery: Celery, *, user: User, first_seen: bool, verified_now: bool
) -> None:
    """Queue the welcome email once; accept pending invites to a verified address."""
    if first_seen and user.email:
        await outbox.queue_email(
            engine,
            celery,
            to=user.email,
            template=WELCOME_TEMPLATE,
            context={"display_name": user.display_name, "email": user.email},
            dedupe_key=f"welcome:{user.uid}",
        )
    if user.email and user.email_verified and (first_seen or verified_now):
        # The invite was addressed to whoever controls that mailbox: only now is it proven.
        await sharing.accept_invites(engine, uid=user.uid, email=user.email)
