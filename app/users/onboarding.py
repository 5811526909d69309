"""What happens when a person's email address is first seen verified.

`welcome` is the `SignInHook` the app is built with (`app.auth.identities` calls it at first
sight and when a sign-in is the one that verified the address): the welcome email, and shares
sent to the address before the account existed becoming grants. Both wait for a verified
address: mail goes only to mailboxes their owner proved, and an invite was addressed to
whoever controls that mailbox.
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
    """Queue the welcome email (once per person) and accept pending invites to the address."""
    if not (user.email and user.email_verified and (first_seen or verified_now)):
        return
    await outbox.queue_email(
        engine,
        celery,
        to=user.email,
        template=WELCOME_TEMPLATE,
        context={"display_name": user.display_name, "email": user.email},
        dedupe_key=f"welcome:{user.uid}",
    )
    await sharing.accept_invites(engine, uid=user.uid, email=user.email)
